package mcphook

import (
	"testing"
)

// BenchmarkToolCall is a hooked no-op call end to end over the in-memory
// transport; bench/mcphook compares it with an unhooked server.
func BenchmarkToolCall(b *testing.B) {
	h := newHarness(b, Config{Tools: map[string]ToolConfig{"search_tickets": {Group: "g"}}}, testPolicy)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.call("search_tickets", args{"query": "printer", "limit": 5.0}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
