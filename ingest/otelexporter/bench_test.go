package otelexporter

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// BenchmarkMap measures the exporter's per-span work without NATS: a
// fully attributed MCP tool-call span to a validated canonical record.
func BenchmarkMap(b *testing.B) {
	td := ptrace.NewTraces()
	for i := 0; i < 100; i++ {
		s := addSpan(td, mcpCall())
		s.SetSpanID(pcommon.SpanID{1, 0, 0, 0, 0, 0, 0, byte(i + 1)})
	}
	m := NewMapper(testConfig())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if n := len(m.Map(td).Messages); n != 100 {
			b.Fatalf("%d messages", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/span")
}
