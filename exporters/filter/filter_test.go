package filter_test

import (
	"strings"
	"testing"

	"github.com/proofline/proofline/exporters/filter"
)

const rec = `{"record_id":"r-1","tool":{"name":"search","server":"jira-mcp"},"outcome":{"status":"error","error_kind":"system_error"},` +
	`"policy":{"decision":"deny","rule":"no-pii"},"cost":{"amount":0.5,"currency":"USD","tokens_in":120},"latency_ms":250,"attributes":{"env":"prod"}}`

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		expr    string
		want    bool
		wantErr string
	}{
		{`record.outcome.status != "ok"`, true, ""},
		{`record.tool.server == "jira-mcp" && record.tool.name.startsWith("sea")`, true, ""},
		{`has(record.policy) && record.policy.decision == "deny"`, true, ""},
		{`record.cost.tokens_in == 120 && record.latency_ms > 200`, true, ""}, // JSON numbers are doubles; ints compare with them
		{`record.cost.amount >= 1`, false, ""},
		{`"prod" in record.attributes.env`, false, "no such overload"},
		{`has(record.region) && record.region == "eu"`, false, ""},
		{`record.region == "eu"`, false, "no such key: region"},
	} {
		t.Run(c.expr, func(t *testing.T) {
			f, err := filter.Compile(c.expr)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			got, err := f.Match([]byte(rec))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("Match: %v, %v; want an error with %q", got, err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Match: %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestCompileRejects(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{`record.tool.name`, "must be a bool"},
		{`record.outcome.status ==`, "Syntax error"},
		{`tool.name == "x"`, "undeclared reference to 'tool'"},
		{`size(record) + 1`, "must be a bool"},
	} {
		t.Run(c.expr, func(t *testing.T) {
			if _, err := filter.Compile(c.expr); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Compile: %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestCostLimit(t *testing.T) {
	f, err := filter.Compile(`[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Match([]byte(rec)); err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Fatalf("Match: %v, want the cost limit exceeded", err)
	}
}
