package mcphook

import (
	"strings"
	"testing"

	"github.com/proofline/proofline/schemas"
)

// TestFailingRuleDeniesTheCall: a rule that fails on a call (here an
// argument of the wrong type, as a prompt-injected agent might send)
// refuses it — the tool does not run — and the call record carries the
// policy's decision: deny, the rule, and a reason saying the rule failed
// and why, without the argument's value. A well-typed call still runs.
func TestFailingRuleDeniesTheCall(t *testing.T) {
	h := newHarness(t, Config{}, `
tools:
  search_tickets:
    args: {query: string, limit: integer}
rules:
  - name: small-pages
    when: tool.name == "search_tickets" && has(args.limit) && args.limit > 50
    decision: deny
    reason: pages of at most 50
`)
	_, err := h.call("search_tickets", args{"query": "printer", "limit": "9999"}, nil)
	if we := wireError(t, err); we.Code != CodePolicyDenied || !strings.Contains(we.Message, "small-pages") {
		t.Fatalf("error %+v", we)
	}
	if n := h.calls["search_tickets"].Load(); n != 0 {
		t.Fatalf("the tool ran %d times on a call its policy could not decide", n)
	}
	if _, err := h.call("search_tickets", args{"query": "printer", "limit": 10.0}, nil); err != nil {
		t.Fatalf("a well-typed call: %v", err)
	}
	var denied *schemas.CallRecord
	for _, r := range h.records(2) {
		if r.Outcome.Status == schemas.StatusPolicyBlocked {
			denied = r
		}
	}
	if denied == nil || denied.Policy.Decision != schemas.DecisionDeny || denied.Policy.Rule != "small-pages" ||
		!strings.Contains(denied.Policy.Reason, "rule small-pages failed to evaluate (on_error: deny)") ||
		!strings.Contains(denied.Policy.Reason, `argument "limit" of search_tickets is string, declared integer`) ||
		strings.Contains(denied.Policy.Reason, "9999") {
		t.Fatalf("record of the refused call: %+v", denied)
	}
}
