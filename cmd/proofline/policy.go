package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/proofline/proofline/ingest/mcphook/policy"
)

// cmdPolicy runs a policy file's own test cases: exit 0 when every case
// gets its expected decision, 1 when one does not, 2 when the file does
// not load (a rule that does not compile fails here, in CI, rather than in
// front of a tool). A file that does not load gets one line per problem,
// "FILE:LINE:COL: message", on stderr.
func cmdPolicy(args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 || args[0] != "test" {
		return exitUsage, fmt.Errorf("%w: proofline policy test FILE", errUsage)
	}
	fs := newFlagSet("policy test", stderr)
	verbose := fs.Bool("v", false, "print every case, not only failures")
	// The file may come before or after the flags.
	rest := args[1:]
	var file string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		file, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, err
		}
		return exitUsage, fmt.Errorf("%w: %v", errUsage, err)
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 {
		file = ""
	}
	if file == "" {
		return exitUsage, fmt.Errorf("%w: proofline policy test [-v] FILE", errUsage)
	}
	p, err := policy.Load(file)
	var le *policy.LoadError
	if errors.As(err, &le) {
		fmt.Fprintln(stderr, le.Error())
		return exitUsage, fmt.Errorf("%s does not load: %d problem(s)", file, len(le.Problems))
	}
	if err != nil {
		return exitUsage, err
	}
	results := p.RunTests()
	failed := 0
	for _, r := range results {
		if !r.Passed {
			failed++
		}
		if r.Passed && !*verbose {
			continue
		}
		status := "ok  "
		if !r.Passed {
			status = "FAIL"
		}
		by := r.Got.Rule
		if by == "" {
			by = "(default)"
		}
		line := fmt.Sprintf("%s %s: got %s by %s", status, r.Name, r.Got.Effect, by)
		if r.Got.Failed {
			line += " (the rule failed: on_error deny)"
		}
		if !r.Passed {
			want := r.Expected
			if r.Rule != "" {
				want += " by " + r.Rule
			}
			if r.ExpectError {
				want += " failing to evaluate"
			}
			line += ", want " + want
		}
		if r.Err != nil {
			line += fmt.Sprintf(" (rule errors: %v)", r.Err)
		}
		fmt.Fprintln(stdout, line)
	}
	fmt.Fprintf(stdout, "%d of %d policy tests passed (mode %s)\n", len(results)-failed, len(results), p.Mode())
	if failed > 0 {
		return exitMismatch, nil
	}
	return exitOK, nil
}
