package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyTestCommand: `proofline policy test` exits 0 when every case
// passes, 1 when one fails, 2 when the file does not load — and then
// prints each problem at its line and column in the file ("yaml:" once at
// most, never CEL's "<input>:1:20"). A case can expect a rule to fail at
// run time and on_error to deny.
func TestPolicyTestCommand(t *testing.T) {
	const schema = "tools: {transfer_funds: {args: {amount: number}}}\n"
	const rule = `rules:
  - name: big
    when: tool.name == "transfer_funds" && args.amount > 1000
    decision: deny
`
	for _, c := range []struct {
		name   string
		src    string
		code   int
		stdout []string
		stderr []string
	}{
		{"the example policy", "", exitOK, []string{"10 of 10 policy tests passed", "an amount sent as a string fails closed: got deny by big-payments-need-a-human (the rule failed: on_error deny)"}, nil},
		{"on_error case passes", schema + rule + `tests:
  - name: string amount
    input: {tool: {name: transfer_funds}, args: {amount: "5000"}}
    expect: deny
    rule: big
    error: true
`, exitOK, []string{"ok   string amount: got deny by big (the rule failed: on_error deny)", "1 of 1 policy tests passed"}, nil},
		{"on_error allow opt-in", "on_error: allow\n" + schema + rule + `tests:
  - name: string amount
    input: {tool: {name: transfer_funds}, args: {amount: "5000"}}
    expect: deny
`, exitMismatch, []string{"FAIL string amount: got allow by (default), want deny", "rule errors: rule big", "0 of 1 policy tests passed"}, nil},
		{"a case expecting a failure that did not happen", schema + rule + `tests:
  - name: big amount
    input: {tool: {name: transfer_funds}, args: {amount: 5000}}
    expect: deny
    error: true
`, exitMismatch, []string{"FAIL big amount: got deny by big, want deny failing to evaluate"}, nil},
		{"typo in a field", `rules:
  - name: typo
    when: tool.nmae == "x"
    decision: deny
`, exitUsage, nil, []string{"FILE:3:15: rule 1 (typo): when: undefined field 'nmae'\n", "proofline policy: FILE does not load: 1 problem(s)"}},
		{"undeclared argument and a type mismatch", schema + `rules:
  - name: a
    when: tool.name == "transfer_funds" && args.ammount > 1000.0
    decision: deny
  - name: b
    when: tool.name > 5
    decision: deny
`, exitUsage, nil, []string{"FILE:4:48: rule 1 (a): when: undefined field 'ammount'\nFILE:7:21: rule 2 (b): when: found no matching overload", "2 problem(s)"}},
		{"yaml error", "rules:\n  - name: a\n   when: x\n", exitUsage, nil, []string{"FILE:1: did not find expected '-' indicator"}},
		{"unknown key", "on_eror: allow\n", exitUsage, nil, []string{`FILE:1: unknown key "on_eror"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := "../../examples/policy.yaml"
			if c.src != "" {
				path = filepath.Join(t.TempDir(), "p.yaml")
				if err := os.WriteFile(path, []byte(c.src), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"policy", "test", "-v", path}, &stdout, &stderr)
			out, errs := stdout.String(), strings.ReplaceAll(stderr.String(), path, "FILE")
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, out, errs)
			}
			for _, w := range c.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range c.stderr {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			for _, bad := range []string{"yaml: yaml:", "<input>"} {
				if strings.Contains(errs, bad) {
					t.Errorf("stderr has %q:\n%s", bad, errs)
				}
			}
		})
	}
}
