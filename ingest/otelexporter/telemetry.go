package otelexporter

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"go.opentelemetry.io/collector/component"
)

// Metric names. The Collector exposes them with its own metrics
// (service::telemetry::metrics), next to exporterhelper's sent/failed
// span counts, which count spans, not records.
const (
	MetricRecords      = "otelcol_exporter_proofline_records"
	MetricSpansIgnored = "otelcol_exporter_proofline_spans_ignored"
	// Values of the "outcome" attribute of MetricRecords.
	OutcomeStored    = "stored"
	OutcomeDuplicate = "duplicate"
	OutcomeInvalid   = "invalid"
)

const scopeName = "github.com/proofline/proofline/ingest/otelexporter"

// telemetry counts what became of each span, so that dropped records are
// visible to whoever watches the Collector, not only in its log.
type telemetry struct {
	records              metric.Int64Counter
	ignored              metric.Int64Counter
	stored, dup, invalid metric.AddOption
}

func newTelemetry(set component.TelemetrySettings) (*telemetry, error) {
	m := set.MeterProvider.Meter(scopeName)
	records, err := m.Int64Counter(MetricRecords,
		metric.WithDescription("Call records handled by the proofline exporter, by outcome: stored in JetStream, duplicate (already stored), invalid (dropped)."),
		metric.WithUnit("{record}"))
	if err != nil {
		return nil, fmt.Errorf("metric %s: %w", MetricRecords, err)
	}
	ignored, err := m.Int64Counter(MetricSpansIgnored,
		metric.WithDescription("Spans the proofline exporter ignored because they are not tool calls."),
		metric.WithUnit("{span}"))
	if err != nil {
		return nil, fmt.Errorf("metric %s: %w", MetricSpansIgnored, err)
	}
	outcome := func(v string) metric.AddOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("outcome", v)))
	}
	return &telemetry{
		records: records, ignored: ignored,
		stored: outcome(OutcomeStored), dup: outcome(OutcomeDuplicate), invalid: outcome(OutcomeInvalid),
	}, nil
}

func (t *telemetry) add(ctx context.Context, stored, dup, invalid, ignored int) {
	if stored > 0 {
		t.records.Add(ctx, int64(stored), t.stored)
	}
	if dup > 0 {
		t.records.Add(ctx, int64(dup), t.dup)
	}
	if invalid > 0 {
		t.records.Add(ctx, int64(invalid), t.invalid)
	}
	if ignored > 0 {
		t.ignored.Add(ctx, int64(ignored))
	}
}
