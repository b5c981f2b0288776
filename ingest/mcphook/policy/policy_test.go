package policy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const example = `
version: 1
mode: enforce
default: allow
rules:
  - name: no-deletes-for-agents
    when: actor.type == "agent" && tool.name == "delete_ticket"
    decision: deny
    reason: agents may not delete tickets
  - name: payments-need-scope
    when: tool.name == "transfer_funds" && !("payments:write" in scopes)
    decision: deny
    reason: transfer_funds needs the payments:write scope
  - name: mask-email
    when: tool.name == "send_email"
    decision: redact
    redact:
      paths: [to, "recipients.*.address"]
      in: tool
  - name: mask-pii-in-record
    when: data_class == "pii"
    decision: redact
    redact: {paths: [ssn], in: record}
  - name: big-refunds
    when: tool.name == "refund" && has(args.amount) && args.amount > 100.0
    decision: deny
    reason: refunds over 100 need a human
tests:
  - name: agent cannot delete
    input: {actor: {id: a-1, type: agent}, tool: {name: delete_ticket}}
    expect: deny
    rule: no-deletes-for-agents
  - name: user can delete
    input: {actor: {id: u-1, type: user}, tool: {name: delete_ticket}}
    expect: allow
  - name: small refund
    input: {actor: {id: a-1, type: agent}, tool: {name: refund}, args: {amount: 20.0}}
    expect: allow
`

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEvaluate(t *testing.T) {
	p := mustParse(t, example)
	agent := Actor{ID: "agent-7", Type: "agent"}
	for _, c := range []struct {
		name   string
		in     Input
		effect string
		rule   string
	}{
		{"denied tool", Input{Actor: agent, Tool: Tool{Name: "delete_ticket"}}, Deny, "no-deletes-for-agents"},
		{"same tool, a user", Input{Actor: Actor{ID: "u", Type: "user"}, Tool: Tool{Name: "delete_ticket"}}, Allow, ""},
		{"missing scope", Input{Actor: agent, Tool: Tool{Name: "transfer_funds"}, Scopes: []string{"tickets:read"}}, Deny, "payments-need-scope"},
		{"with scope", Input{Actor: agent, Tool: Tool{Name: "transfer_funds"}, Scopes: []string{"payments:write"}}, Allow, ""},
		{"redaction", Input{Actor: agent, Tool: Tool{Name: "send_email"}}, Redact, "mask-email"},
		{"data class", Input{Actor: agent, Tool: Tool{Name: "lookup"}, DataClass: "pii"}, Redact, "mask-pii-in-record"},
		{"argument over limit", Input{Actor: agent, Tool: Tool{Name: "refund"}, Args: map[string]any{"amount": 250.0}}, Deny, "big-refunds"},
		{"argument under limit", Input{Actor: agent, Tool: Tool{Name: "refund"}, Args: map[string]any{"amount": 25.0}}, Allow, ""},
		{"argument missing", Input{Actor: agent, Tool: Tool{Name: "refund"}}, Allow, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := p.Evaluate(c.in)
			if err != nil {
				t.Fatalf("evaluate: %v", err)
			}
			if d.Effect != c.effect || d.Rule != c.rule || !d.Enforced {
				t.Fatalf("got %+v, want %s by %q (enforced)", d, c.effect, c.rule)
			}
		})
	}
	d, _ := p.Evaluate(Input{Actor: agent, Tool: Tool{Name: "send_email"}})
	if !reflect.DeepEqual(d.Redact, []string{"to", "recipients.*.address"}) || d.RedactIn != InTool {
		t.Fatalf("redaction %v in %s", d.Redact, d.RedactIn)
	}
}

func TestStagingDoesNotEnforce(t *testing.T) {
	p := mustParse(t, strings.Replace(example, "mode: enforce", "mode: staging", 1))
	d, err := p.Evaluate(Input{Actor: Actor{ID: "a", Type: "agent"}, Tool: Tool{Name: "delete_ticket"}})
	if err != nil || d.Effect != Deny || d.Enforced {
		t.Fatalf("staging: %+v (%v), want deny, not enforced", d, err)
	}
}

func TestRunTests(t *testing.T) {
	p := mustParse(t, example)
	res := p.RunTests()
	if len(res) != 3 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		if !r.Passed {
			t.Errorf("%s failed: got %+v", r.Name, r.Got)
		}
	}
	bad := mustParse(t, example+`  - name: wrong expectation
    input: {actor: {id: a-1, type: agent}, tool: {name: delete_ticket}}
    expect: allow
`)
	res = bad.RunTests()
	if res[3].Passed || res[3].Got.Effect != Deny {
		t.Fatalf("a wrong expectation passed: %+v", res[3])
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"syntax", "rules:\n  - name: x\n    when: 'tool.name =='\n    decision: deny\n", "when"},
		{"not bool", "rules:\n  - name: x\n    when: tool.name\n    decision: deny\n", "bool"},
		{"unknown variable", "rules:\n  - name: x\n    when: user.id == \"a\"\n    decision: deny\n", "undeclared"},
		{"bad decision", "rules:\n  - name: x\n    when: 'true'\n    decision: maybe\n", "decision"},
		{"redact without paths", "rules:\n  - name: x\n    when: 'true'\n    decision: redact\n", "redact.paths"},
		{"redact where", "rules:\n  - name: x\n    when: 'true'\n    decision: redact\n    redact: {paths: [a], in: logs}\n", "redact.in"},
		{"unnamed", "rules:\n  - when: 'true'\n    decision: deny\n", "name is required"},
		{"duplicate name", "rules:\n  - {name: x, when: 'true', decision: deny}\n  - {name: x, when: 'true', decision: allow}\n", "twice"},
		{"mode", "mode: audit\n", "mode"},
		{"default", "default: redact\n", "default"},
		{"unknown field", "rulez: []\n", "rulez"},
		{"test expectation", "tests:\n  - {name: t, expect: perhaps}\n", "expect"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestRedactArgs(t *testing.T) {
	args := map[string]any{
		"to":         "alice@example.com",
		"subject":    "hi",
		"recipients": []any{map[string]any{"address": "bob@example.com", "name": "Bob"}},
		"nested":     map[string]any{"ssn": "123-45-6789", "keep": 1.0},
	}
	got := RedactArgs(args, []string{"to", "recipients.*.address", "nested.ssn", "absent.path"})
	want := map[string]any{
		"to":         Masked,
		"subject":    "hi",
		"recipients": []any{map[string]any{"address": Masked, "name": "Bob"}},
		"nested":     map[string]any{"ssn": Masked, "keep": 1.0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if args["to"] != "alice@example.com" || args["nested"].(map[string]any)["ssn"] != "123-45-6789" {
		t.Fatal("RedactArgs changed its input")
	}
}

// TestCostLimit: a rule whose cost grows with the arguments is stopped at
// the cost limit instead of stalling the call; it fails, and so denies the
// call (on_error: deny), with an error naming it.
func TestCostLimit(t *testing.T) {
	p := mustParse(t, `
rules:
  - name: quadratic
    when: args.items.exists(i, args.items.exists(j, i == j && i == "needle"))
    decision: deny
`)
	items := make([]any, 2000)
	for i := range items {
		items[i] = fmt.Sprint(i)
	}
	d, err := p.Evaluate(Input{Tool: Tool{Name: "x"}, Args: map[string]any{"items": items}})
	if err == nil || !strings.Contains(err.Error(), "quadratic") || !strings.Contains(err.Error(), "cost") || d.Effect != Deny || d.Rule != "quadratic" || !d.Failed {
		t.Fatalf("decision %+v, error %v: want a deny by the failed rule and a cost error naming it", d, err)
	}
	// Small inputs evaluate normally.
	d, err = p.Evaluate(Input{Tool: Tool{Name: "x"}, Args: map[string]any{"items": []any{"needle"}}})
	if err != nil || d.Effect != Deny || d.Failed {
		t.Fatalf("small input: %+v %v", d, err)
	}
}

func TestReads(t *testing.T) {
	rule := func(when string) string {
		return "rules:\n  - name: r\n    when: '" + when + "'\n    decision: deny\n"
	}
	for _, tc := range []struct {
		when string
		args bool
		sess bool
	}{
		{`tool.name == "x"`, false, false},
		{`has(args.amount) && args.amount > 1.0`, true, false},
		{`"web_fetch" in session.tools`, false, true},
		{`actor.type == "agent" && size(args) > 0 && size(session.tools) > 3`, true, true},
	} {
		p := mustParse(t, rule(tc.when))
		if p.Reads("args") != tc.args || p.Reads("session") != tc.sess {
			t.Errorf("%s: Reads(args)=%v Reads(session)=%v, want %v %v", tc.when, p.Reads("args"), p.Reads("session"), tc.args, tc.sess)
		}
		if !p.Reads("tool") && !p.Reads("actor") && !p.Reads("args") && !p.Reads("session") {
			t.Errorf("%s: reads nothing", tc.when)
		}
		if p.Reads("nonsense") {
			t.Errorf("%s: reads an undeclared variable", tc.when)
		}
	}
}

// A memoized policy must decide every input as a fresh evaluation would:
// inputs that differ in any field a rule can read get their own decision,
// however the strings could be run together.
func TestMemoizedDecisions(t *testing.T) {
	const src = `
rules:
  - name: payments-need-scope
    when: tool.name == "transfer_funds" && !("payments:write" in scopes)
    decision: deny
  - name: agent-a-b
    when: actor.id == "a" && actor.type == "b"
    decision: deny
  - name: pii
    when: data_class == "pii" && tool.write
    decision: redact
    redact: {paths: [ssn]}
`
	p := mustParse(t, src)
	if p.memo == nil {
		t.Fatal("a policy reading neither args nor session should be memoized")
	}
	inputs := []Input{
		{Actor: Actor{ID: "a", Type: "b"}, Tool: Tool{Name: "t"}},
		{Actor: Actor{ID: "ab", Type: ""}, Tool: Tool{Name: "t"}},
		{Actor: Actor{ID: "a", Type: "b"}, Tool: Tool{Name: "t"}, Scopes: []string{""}},
		{Actor: Actor{ID: "x", Type: "agent"}, Tool: Tool{Name: "transfer_funds"}, Scopes: []string{"payments:write"}},
		{Actor: Actor{ID: "x", Type: "agent"}, Tool: Tool{Name: "transfer_funds"}, Scopes: []string{"payments:", "write"}},
		{Actor: Actor{ID: "x", Type: "agent"}, Tool: Tool{Name: "transfer_funds"}},
		{Actor: Actor{ID: "x", Type: "agent"}, Tool: Tool{Name: "store", Write: true}, DataClass: "pii"},
		{Actor: Actor{ID: "x", Type: "agent"}, Tool: Tool{Name: "store", Write: false}, DataClass: "pii"},
	}
	fresh := mustParse(t, src)
	fresh.memo = nil
	for round := range 2 { // the second round is answered from the memo
		for i, in := range inputs {
			got, err := p.Evaluate(in)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := fresh.Evaluate(in)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round %d, input %d: memoized %+v, fresh %+v", round, i, got, want)
			}
		}
	}
	if p.memo.Len() != len(inputs) {
		t.Errorf("%d memo entries for %d distinct inputs", p.memo.Len(), len(inputs))
	}
	// Reading the arguments turns memoization off: they change per call.
	if q := mustParse(t, example); q.memo != nil {
		t.Error("a policy reading args must not be memoized")
	}
}

// TestElevationVariables: rules read elevation.scopes, .approver and
// .reason; calls that differ only in their elevation are decided apart
// (the decision memo keys on it), and the policy file's own test cases
// can set it.
func TestElevationVariables(t *testing.T) {
	p := mustParse(t, `
version: 1
rules:
  - name: elevation-needs-approver
    when: '"payments:write" in elevation.scopes && elevation.approver == ""'
    decision: deny
  - name: elevation-needs-reason
    when: elevation.scopes.size() > 0 && elevation.reason == ""
    decision: deny
tests:
  - name: approved
    input: {actor: {id: a, type: agent}, tool: {name: pay}, elevation: {scopes: [payments:write], approver: bob, reason: INC-7}}
    expect: allow
  - name: unapproved
    input: {actor: {id: a, type: agent}, tool: {name: pay}, elevation: {scopes: [payments:write], reason: INC-7}}
    expect: deny
    rule: elevation-needs-approver
`)
	base := Input{Actor: Actor{ID: "a", Type: "agent"}, Tool: Tool{Name: "pay"}}
	for _, c := range []struct {
		name string
		e    Elevation
		rule string
	}{
		{"none", Elevation{}, ""},
		{"approved", Elevation{Scopes: []string{"payments:write"}, Approver: "bob", Reason: "INC-7"}, ""},
		{"no approver", Elevation{Scopes: []string{"payments:write"}, Reason: "INC-7"}, "elevation-needs-approver"},
		{"no reason", Elevation{Scopes: []string{"tickets:admin"}, Approver: "bob"}, "elevation-needs-reason"},
		{"approved again", Elevation{Scopes: []string{"payments:write"}, Approver: "bob", Reason: "INC-7"}, ""},
	} {
		in := base
		in.Elevation = c.e
		d, err := p.Evaluate(in)
		if err != nil || d.Rule != c.rule {
			t.Errorf("%s: decided %+v (%v), want rule %q", c.name, d, err, c.rule)
		}
	}
	for _, r := range p.RunTests() {
		if !r.Passed {
			t.Errorf("policy test %s failed: %+v", r.Name, r)
		}
	}
}
