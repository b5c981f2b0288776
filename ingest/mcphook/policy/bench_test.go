package policy

import "testing"

func BenchmarkEvaluate(b *testing.B) {
	p, err := Parse([]byte(example))
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Actor: Actor{ID: "agent-7", Type: "agent"}, Tool: Tool{Name: "search_tickets"}, Scopes: []string{"tickets:read"},
		Args: map[string]any{"query": "printer", "limit": 5.0}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Evaluate(in); err != nil {
			b.Fatal(err)
		}
	}
}
