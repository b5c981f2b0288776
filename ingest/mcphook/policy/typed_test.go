package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// transferSchema declares transfer_funds' arguments, as examples/policy.yaml
// does.
const transferSchema = `
tools:
  transfer_funds:
    args: {amount: number, to: string, count: integer, urgent: boolean}
`

// TestLoadErrors: a mistake in a rule — a misspelt field, a type mismatch,
// an undeclared argument of a tool with an argument schema — fails the
// load, and the error names the policy file's line and column of the
// mistake (not CEL's position within the expression), whatever YAML
// style the rule is written in. YAML's own errors have their line and a
// single prefix.
func TestLoadErrors(t *testing.T) {
	for _, c := range []struct {
		name, src  string
		line, col  int
		want       string
		notWant    string
		noPosition bool
	}{
		{name: "unknown field", src: `
rules:
  - name: typo
    when: tool.nmae == "x"
    decision: deny
`, line: 4, col: 15, want: `rule 1 (typo): when: undefined field 'nmae'`},
		{name: "unknown actor field", src: `
rules:
  - name: typo
    when: actor.type == "agent" && actor.idd == "x"
    decision: deny
`, line: 4, col: 41, want: "undefined field 'idd'"},
		{name: "type mismatch", src: `
rules:
  - name: cmp
    when: tool.name > 5
    decision: deny
`, line: 4, col: 21, want: "no matching overload for '_>_' applied to '(string, int)'"},
		{name: "bool field compared with a string", src: `
rules:
  - name: cmp
    when: tool.write == "yes"
    decision: deny
`, line: 4, col: 22, want: "no matching overload"},
		{name: "session tools is a list of strings", src: `
rules:
  - name: cmp
    when: 5 in session.tools
    decision: deny
`, line: 4, col: 13, want: "no matching overload"},
		{name: "undeclared argument of a declared tool", src: transferSchema + `
rules:
  - name: big
    when: tool.name == "transfer_funds" && args.ammount > 1000.0
    decision: deny
`, line: 8, col: 48, want: "undefined field 'ammount'"},
		{name: "declared argument compared with another type", src: transferSchema + `
rules:
  - name: big
    when: '"transfer_funds" == tool.name && args.amount > "1000"'
    decision: deny
`, line: 8, col: 57, want: "'(double, string)'"},
		{name: "declared args are an object, not a map", src: transferSchema + `
rules:
  - name: any
    when: tool.name == "transfer_funds" && size(args) > 3
    decision: deny
`, line: 8, col: 48, want: "no matching overload for 'size'"},
		{name: "double-quoted with an escape before the error", src: `
rules:
  - name: q
    when: "actor.id == \"a\" && tool.nmae == \"x\""
    decision: deny
`, line: 4, col: 37, want: "undefined field 'nmae'"},
		{name: "single-quoted with an escaped quote before the error", src: `
rules:
  - name: q
    when: 'actor.id == ''a'' && tool.nmae == ''x'''
    decision: deny
`, line: 4, col: 37, want: "undefined field 'nmae'"},
		{name: "literal block, second line", src: `
rules:
  - name: block
    when: |
      tool.name == "x" &&
        actor.idd == "y"
    decision: deny
`, line: 6, col: 14, want: "undefined field 'idd'"},
		{name: "folded block: the start of the rule, and CEL's place in it", src: `
rules:
  - name: folded
    when: >
      tool.name == "x" &&
      actor.idd == "y"
    decision: deny
`, line: 4, col: 11, want: "undefined field 'idd' (at 1:26 of the expression)"},
		{name: "syntax error", src: `
rules:
  - name: syn
    when: tool.name ==
    decision: deny
`, line: 4, col: 23, want: "rule 1 (syn): when: Syntax error"},
		{name: "not a bool", src: `
rules:
  - name: nb
    when: tool.name
    decision: deny
`, line: 4, col: 11, want: "when must be a bool expression, is string"},
		{name: "bad decision", src: `
rules:
  - name: d
    when: "true"
    decision: maybe
`, line: 5, col: 15, want: `decision "maybe"`},
		{name: "bad on_error", src: `
on_error: ignore
rules: []
`, line: 2, col: 11, want: `on_error "ignore": want deny or allow`},
		{name: "bad rule on_error", src: `
rules:
  - {name: r, when: "true", decision: deny, on_error: maybe}
`, line: 3, col: 55, want: `rule 1 (r): on_error "maybe"`},
		{name: "unknown argument type", src: `
tools:
  transfer_funds:
    args:
      amount: numbr
rules: []
`, line: 5, col: 15, want: `tools.transfer_funds.args.amount: type "numbr": want string, number`},
		{name: "argument that is not an identifier", src: `
tools:
  t: {args: {to-address: string}}
`, line: 3, col: 26, want: "not a CEL identifier"},
		{name: "unknown key", src: `
version: 1
on_eror: allow
`, line: 3, want: `unknown key "on_eror"`, notWant: "policy.File"},
		// yaml.v3 names the line of the collection it was parsing.
		{name: "yaml syntax", src: `
rules:
  - name: a
   when: x
`, line: 2, want: "did not find expected"},
		{name: "yaml type", src: `
mode: [enforce]
`, line: 2, want: "cannot unmarshal"},
		{name: "test expectation", src: `
tests:
  - name: t
    expect: perhaps
`, line: 4, col: 13, want: `test 1 (t): expect "perhaps"`},
		{name: "empty", src: "# nothing\n", want: "the policy file is empty", noPosition: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.yaml")
			if err := os.WriteFile(path, []byte(c.src), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load: %v, want a *LoadError", err)
			}
			if le.File != path || len(le.Problems) == 0 {
				t.Fatalf("LoadError %+v", le)
			}
			p := le.Problems[0]
			if !c.noPosition && (p.Line != c.line || (c.col != 0 && p.Column != c.col)) {
				t.Errorf("at %d:%d, want %d:%d (%s)", p.Line, p.Column, c.line, c.col, p.Msg)
			}
			msg := err.Error()
			prefix := path + ":"
			if !c.noPosition {
				prefix = path + ":" + strconv.Itoa(c.line) + ":"
			}
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, c.want) {
				t.Errorf("error %q, want one starting %q and containing %q", msg, prefix, c.want)
			}
			for _, bad := range []string{"yaml: ", "<input>", "ERROR:"} {
				if strings.Contains(strings.ReplaceAll(msg, path, "FILE"), bad) {
					t.Errorf("error %q contains %q", msg, bad)
				}
			}
			if c.notWant != "" && strings.Contains(msg, c.notWant) {
				t.Errorf("error %q contains %q", msg, c.notWant)
			}
		})
	}
}

// TestEveryProblemIsReported: a file with several mistakes lists them all,
// one line each, in file order.
func TestEveryProblemIsReported(t *testing.T) {
	_, err := Parse([]byte(`
rules:
  - name: a
    when: tool.nmae == "x"
    decision: deny
  - name: b
    when: tool.name > 5
    decision: deny
  - name: c
    when: "true"
    decision: maybe
`))
	var le *LoadError
	if !errors.As(err, &le) || len(le.Problems) != 3 {
		t.Fatalf("error %v: want three problems", err)
	}
	for i, line := range []int{4, 7, 11} {
		if le.Problems[i].Line != line {
			t.Errorf("problem %d at line %d, want %d", i, le.Problems[i].Line, line)
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], "policy:7:21: rule 2 (b)") {
		t.Errorf("error text %q", err.Error())
	}
}

// TestUndeclaredArgsStayDynamic: without an argument schema (or in a rule
// not pinned to the declared tool) args is a map of JSON values, so any
// key loads; a rule pinned to another tool is not typed by this one's
// schema.
func TestUndeclaredArgsStayDynamic(t *testing.T) {
	for _, when := range []string{
		`tool.name == "refund" && args.ammount > 1000.0`,
		`has(args.amount) && args.amount > 1000`,
		`tool.name == "transfer_funds" || args.anything == "x"`,
		`size(args) > 3`,
	} {
		if _, err := Parse([]byte(transferSchema + "rules:\n  - name: r\n    when: '" + when + "'\n    decision: deny\n")); err != nil {
			t.Errorf("%s: %v", when, err)
		}
	}
}

// TestRuntimeTypeErrorsFailClosed: a call whose argument has the wrong
// type (a prompt-injected agent sending amount "5000"), or lacks one a
// rule reads, makes the rule fail; the call is denied by that rule, the
// decision says so, and the recorded reason names the argument and types
// but never its value. A well-typed call is decided by the rule as
// written. This holds with a declared schema and without one.
func TestRuntimeTypeErrorsFailClosed(t *testing.T) {
	typed := mustParse(t, transferSchema+`
rules:
  - name: big-transfers
    when: tool.name == "transfer_funds" && args.amount > 1000
    decision: deny
    reason: over 1000
  - name: many
    when: tool.name == "transfer_funds" && args.count > 3 && !args.urgent
    decision: deny
`)
	untyped := mustParse(t, `
rules:
  - name: big-transfers
    when: tool.name == "transfer_funds" && args.amount > 1000
    decision: deny
    reason: over 1000
`)
	guarded := mustParse(t, transferSchema+`
rules:
  - name: blocked-account
    when: tool.name == "transfer_funds" && has(args.to) && args.to == "acct-666"
    decision: deny
`)
	transfer := func(args map[string]any) Input {
		return Input{Actor: Actor{ID: "agent-7", Type: "agent"}, Tool: Tool{Name: "transfer_funds"}, Args: args}
	}
	for _, c := range []struct {
		name    string
		p       *Policy
		in      Input
		effect  string
		rule    string
		failed  bool
		because string
	}{
		{"typed: amount as a string", typed, transfer(map[string]any{"amount": "5000", "to": "acct-666"}), Deny, "big-transfers", true, `argument "amount" of transfer_funds is string, declared number`},
		{"typed: amount missing", typed, transfer(map[string]any{"to": "acct-666"}), Deny, "big-transfers", true, `argument "amount" of transfer_funds is missing`},
		{"typed: amount null", typed, transfer(map[string]any{"amount": nil}), Deny, "big-transfers", true, "is null, declared number"},
		{"typed: over the limit", typed, transfer(map[string]any{"amount": 5000.0}), Deny, "big-transfers", false, "over 1000"},
		{"typed: an int (YAML test input) is a number", typed, transfer(map[string]any{"amount": 5000}), Deny, "big-transfers", false, "over 1000"},
		{"typed: under the limit", typed, transfer(map[string]any{"amount": 10.0, "count": 1.0, "urgent": false}), Allow, "", false, "no rule matched"},
		{"typed: integer with a fraction", typed, transfer(map[string]any{"amount": 10.0, "count": 4.5, "urgent": false}), Deny, "many", true, "is number, declared integer"},
		{"typed: boolean as a string", typed, transfer(map[string]any{"amount": 10.0, "count": 4.0, "urgent": "false"}), Deny, "many", true, "is string, declared boolean"},
		{"typed: another tool is not affected", typed, Input{Tool: Tool{Name: "search"}, Args: map[string]any{"amount": "x"}}, Allow, "", false, "no rule matched"},
		{"typed, guarded by has(): argument missing", guarded, transfer(map[string]any{"amount": 1.0}), Allow, "", false, "no rule matched"},
		{"typed, guarded by has(): argument present", guarded, transfer(map[string]any{"to": "acct-666"}), Deny, "blocked-account", false, ""},
		{"typed, guarded by has(): argument of the wrong type", guarded, transfer(map[string]any{"to": 666.0}), Deny, "blocked-account", true, `argument "to" of transfer_funds is number, declared string`},
		{"untyped: amount as a string", untyped, transfer(map[string]any{"amount": "5000"}), Deny, "big-transfers", true, "failed to evaluate (on_error: deny)"},
		{"untyped: over the limit", untyped, transfer(map[string]any{"amount": 5000.0}), Deny, "big-transfers", false, "over 1000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := c.p.Evaluate(c.in)
			if d.Effect != c.effect || d.Rule != c.rule || d.Failed != c.failed || !d.Enforced || !strings.Contains(d.Reason, c.because) {
				t.Fatalf("decision %+v (error %v), want %s by %q, failed %v, reason with %q", d, err, c.effect, c.rule, c.failed, c.because)
			}
			if c.failed != (err != nil) {
				t.Fatalf("error %v, failed %v", err, c.failed)
			}
			if c.failed && !strings.Contains(d.Reason, "rule "+c.rule+" failed to evaluate") {
				t.Errorf("reason %q does not say the rule failed", d.Reason)
			}
			if strings.Contains(d.Reason, "5000") || strings.Contains(d.Reason, "acct-666") {
				t.Errorf("reason %q holds an argument value", d.Reason)
			}
		})
	}
}

// TestOnError: on_error decides what a failing rule does — deny (the
// default) refuses the call; allow passes over the rule, so the rules
// after it and the default decide; a rule's own on_error overrides the
// file's. In staging the failure is recorded as a deny, not enforced.
func TestOnError(t *testing.T) {
	const rules = `
rules:
  - name: typed-amount
    when: tool.name == "refund" && args.amount > 100
    decision: deny
    ON_ERROR_RULE
  - name: refunds-by-agents
    when: tool.name == "refund" && actor.type == "agent"
    decision: redact
    redact: {paths: [iban]}
`
	bad := Input{Actor: Actor{ID: "a", Type: "agent"}, Tool: Tool{Name: "refund"}, Args: map[string]any{"amount": "lots"}}
	for _, c := range []struct {
		name, file, rule string
		in               Input
		effect, by       string
		failed, enforced bool
	}{
		{"default is deny", "", "", bad, Deny, "typed-amount", true, true},
		{"file deny", "on_error: deny\n", "", bad, Deny, "typed-amount", true, true},
		{"file allow: the next rule decides", "on_error: allow\n", "", bad, Redact, "refunds-by-agents", false, true},
		{"file allow: then the default", "on_error: allow\ndefault: deny\n", "", Input{Actor: Actor{Type: "user"}, Tool: Tool{Name: "refund"}, Args: map[string]any{"amount": "lots"}}, Deny, "", false, true},
		{"rule allow overrides file deny", "on_error: deny\n", "on_error: allow", bad, Redact, "refunds-by-agents", false, true},
		{"rule deny overrides file allow", "on_error: allow\n", "on_error: deny", bad, Deny, "typed-amount", true, true},
		{"staging records, does not enforce", "mode: staging\n", "", bad, Deny, "typed-amount", true, false},
		{"a rule that evaluates is not affected", "", "", Input{Actor: Actor{Type: "agent"}, Tool: Tool{Name: "refund"}, Args: map[string]any{"amount": 5.0}}, Redact, "refunds-by-agents", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, c.file+strings.Replace(rules, "ON_ERROR_RULE", c.rule, 1))
			d, err := p.Evaluate(c.in)
			if d.Effect != c.effect || d.Rule != c.by || d.Failed != c.failed || d.Enforced != c.enforced {
				t.Fatalf("decision %+v, want %s by %q (failed %v, enforced %v)", d, c.effect, c.by, c.failed, c.enforced)
			}
			if c.in.Args["amount"] == "lots" && (err == nil || !strings.Contains(err.Error(), "typed-amount")) {
				t.Fatalf("error %v: want the failing rule's error, whatever on_error decided", err)
			}
		})
	}
}

// TestRuleErrorMetric: every failing evaluation is counted in
// proofline.policy.rule_errors, by rule and on_error, through the
// MeterProvider the policy was given.
func TestRuleErrorMetric(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	p, err := Parse([]byte(`
rules:
  - {name: strict, when: 'tool.name == "a" && args.n > 1', decision: deny}
  - {name: lenient, when: 'tool.name == "b" && args.n > 1', decision: deny, on_error: allow}
`), WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []Input{
		{Tool: Tool{Name: "a"}, Args: map[string]any{"n": "x"}},
		{Tool: Tool{Name: "a"}, Args: map[string]any{"n": "x"}},
		{Tool: Tool{Name: "b"}, Args: map[string]any{"n": "x"}},
		{Tool: Tool{Name: "a"}, Args: map[string]any{"n": 2.0}},
	} {
		_, _ = p.Evaluate(in)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "proofline.policy.rule_errors" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				rule, _ := dp.Attributes.Value("policy.rule")
				onErr, _ := dp.Attributes.Value("policy.on_error")
				got[rule.AsString()+"/"+onErr.AsString()] = dp.Value
			}
		}
	}
	if len(got) != 2 || got["strict/deny"] != 2 || got["lenient/allow"] != 1 {
		t.Fatalf("rule_errors %v, want strict/deny 2 and lenient/allow 1", got)
	}
}

// TestPolicyTestCasesExerciseOnError: a policy's own test case can expect
// a rule to fail (error: true) and on_error to decide.
func TestPolicyTestCasesExerciseOnError(t *testing.T) {
	p := mustParse(t, transferSchema+`
rules:
  - name: big
    when: tool.name == "transfer_funds" && args.amount > 1000
    decision: deny
tests:
  - name: a string amount fails closed
    input: {tool: {name: transfer_funds}, args: {amount: "5000"}}
    expect: deny
    rule: big
    error: true
  - name: a big amount is denied, and the rule did not fail
    input: {tool: {name: transfer_funds}, args: {amount: 5000}}
    expect: deny
    rule: big
    error: true
`)
	res := p.RunTests()
	if len(res) != 2 || !res[0].Passed || res[0].Err == nil || !res[0].Got.Failed {
		t.Fatalf("first case: %+v", res[0])
	}
	if res[1].Passed {
		t.Fatalf("a case expecting a failure passed on a rule that matched: %+v", res[1])
	}
}

// TestExamplePolicy: examples/policy.yaml (the example server's policy,
// used by the e2e MCP tests) loads and passes its own test cases.
func TestExamplePolicy(t *testing.T) {
	p, err := Load("../../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res := p.RunTests()
	if len(res) < 8 {
		t.Fatalf("%d test cases", len(res))
	}
	for _, r := range res {
		if !r.Passed {
			t.Errorf("%s: got %+v (%v)", r.Name, r.Got, r.Err)
		}
	}
}

// TestREADMEPolicy: the policy shown in the README's "The policy file"
// section loads and its test cases pass, so it cannot drift from what the
// code accepts.
func TestREADMEPolicy(t *testing.T) {
	raw, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "### The policy file")
	if !ok {
		t.Fatal("README has no policy file section")
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(section)
	if m == nil {
		t.Fatal("no yaml block in the README's policy section")
	}
	p, err := Parse([]byte(m[1]))
	if err != nil {
		t.Fatalf("the README's policy: %v", err)
	}
	for _, r := range p.RunTests() {
		if !r.Passed {
			t.Errorf("the README's policy, case %s: got %+v", r.Name, r.Got)
		}
	}
}

// TestCompileChecksTypes: a policy built in Go is checked as a file is,
// its problems without a place.
func TestCompileChecksTypes(t *testing.T) {
	_, err := Compile(File{
		Tools: map[string]ToolDecl{"refund": {Args: map[string]string{"amount": ArgNumber}}},
		Rules: []Rule{{Name: "r", When: `tool.name == "refund" && args.amout > 1`, Decision: Deny}},
	})
	var le *LoadError
	if !errors.As(err, &le) || len(le.Problems) != 1 || le.Problems[0].Line != 0 || err.Error() != "policy: rule 1 (r): when: undefined field 'amout'" {
		t.Fatalf("error %v", err)
	}
}
