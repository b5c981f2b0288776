// Package policy decides, before a tool runs, whether an MCP call is
// allowed, denied or allowed with some arguments redacted. Rules are CEL
// expressions (github.com/google/cel-go) in a YAML file, evaluated in
// order; the first that matches decides.
//
// CEL rather than a home-made rule language: it is the language
// Kubernetes admission policies and Envoy use for the same job — side
// effect free, type checked when the file is loaded, and bounded in cost,
// so a policy cannot hang or crash the server it guards.
package policy

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	lru "github.com/hashicorp/golang-lru/v2"
	"gopkg.in/yaml.v3"
)

// Effects a policy can decide.
const (
	Allow  = "allow"
	Deny   = "deny"
	Redact = "redact"
)

// Modes of a policy.
const (
	// Enforce applies decisions: denied calls do not run, redactions are
	// made.
	Enforce = "enforce"
	// Staging evaluates and records decisions without applying them, to
	// try a policy on real traffic before enforcing it.
	Staging = "staging"
)

// Where a redaction applies.
const (
	// InTool masks the arguments before the tool sees them (and so in the
	// record too).
	InTool = "tool"
	// InRecord leaves the tool's arguments alone and masks them only in
	// what is recorded: the record's argument digest is of the masked
	// arguments, so a low-entropy secret cannot be recovered by hashing
	// guesses.
	InRecord = "record"
)

// Masked is what a redacted value is replaced with.
const Masked = "[REDACTED]"

// costLimit bounds one rule's evaluation (CEL cost units), so that a rule
// over large arguments cannot stall the call it guards.
const costLimit = 100_000

// File is a policy file as written.
type File struct {
	Version int    `yaml:"version"`
	Mode    string `yaml:"mode"`
	Default string `yaml:"default"`
	Rules   []Rule `yaml:"rules"`
	Tests   []Test `yaml:"tests"`
}

// Rule is one CEL rule.
type Rule struct {
	Name     string     `yaml:"name"`
	When     string     `yaml:"when"`
	Decision string     `yaml:"decision"`
	Reason   string     `yaml:"reason"`
	Redact   *Redaction `yaml:"redact"`
}

// Redaction names the argument paths a redact rule masks.
type Redaction struct {
	// Paths are dot-separated object keys into the arguments
	// ("customer.email"); "*" matches any key or array element.
	Paths []string `yaml:"paths"`
	// In is InTool (default) or InRecord.
	In string `yaml:"in"`
}

// Test is one of a policy's own test cases.
type Test struct {
	Name   string `yaml:"name"`
	Input  Input  `yaml:"input"`
	Expect string `yaml:"expect"`
	// Rule, when set, is the rule expected to decide.
	Rule string `yaml:"rule"`
}

// Input is what rules see of a call. In CEL: actor.id, actor.type,
// actor.on_behalf_of, tool.name, tool.server, tool.group, tool.version,
// tool.write, method, scopes (list of strings), args (the arguments as
// JSON values), data_class, session.tools (tools called earlier in the
// session, oldest first).
type Input struct {
	Actor     Actor          `yaml:"actor" json:"actor"`
	Tool      Tool           `yaml:"tool" json:"tool"`
	Method    string         `yaml:"method" json:"method"`
	Scopes    []string       `yaml:"scopes" json:"scopes"`
	Args      map[string]any `yaml:"args" json:"args"`
	DataClass string         `yaml:"data_class" json:"data_class"`
	// SessionTools are the tools called earlier in the same session.
	SessionTools []string `yaml:"session_tools" json:"session_tools"`
}

// Actor is who makes the call.
type Actor struct {
	ID         string `yaml:"id" json:"id"`
	Type       string `yaml:"type" json:"type"`
	OnBehalfOf string `yaml:"on_behalf_of" json:"on_behalf_of"`
}

// Tool is what is called.
type Tool struct {
	Name    string `yaml:"name" json:"name"`
	Server  string `yaml:"server" json:"server"`
	Group   string `yaml:"group" json:"group"`
	Version string `yaml:"version" json:"version"`
	Write   bool   `yaml:"write" json:"write"`
}

// Decision is the outcome of evaluating a policy on one call.
type Decision struct {
	Effect string
	// Rule is the rule that decided; empty for the default.
	Rule   string
	Reason string
	// Redact and RedactIn are set for Redact.
	Redact   []string
	RedactIn string
	// Enforced is false in staging mode: the decision is recorded, not
	// applied.
	Enforced bool
}

// Policy is a compiled policy, safe for concurrent use.
type Policy struct {
	mode  string
	deflt string
	rules []compiled
	tests []Test
	// reads is the union of the variables the rules read (Reads).
	reads map[string]bool
	// memo holds recent decisions when no rule reads the arguments or the
	// session (nil otherwise): the decision is then a function of who
	// calls which tool with which scopes, a small set that repeats call
	// after call, and CEL rules are pure.
	memo *lru.Cache[string, Decision]
}

// memoSize bounds the remembered decisions.
const memoSize = 4096

type compiled struct {
	Rule
	prg cel.Program
}

// Load reads and compiles a policy file.
func Load(path string) (*Policy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return p, nil
}

// Parse compiles a policy from YAML. Every rule is type checked here, so a
// policy with a mistake fails when it is loaded, not at the first call it
// should have stopped.
func Parse(raw []byte) (*Policy, error) {
	var f File
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	return Compile(f)
}

// Compile compiles a parsed policy.
func Compile(f File) (*Policy, error) {
	if f.Version != 0 && f.Version != 1 {
		return nil, fmt.Errorf("version %d: this proofline reads version 1", f.Version)
	}
	p := &Policy{mode: f.Mode, deflt: f.Default, tests: f.Tests, reads: map[string]bool{}}
	if p.mode == "" {
		p.mode = Enforce
	}
	if p.mode != Enforce && p.mode != Staging {
		return nil, fmt.Errorf("mode %q: want enforce or staging", f.Mode)
	}
	if p.deflt == "" {
		p.deflt = Allow
	}
	if p.deflt != Allow && p.deflt != Deny {
		return nil, fmt.Errorf("default %q: want allow or deny", f.Default)
	}
	env, err := newEnv()
	if err != nil {
		return nil, err
	}
	var errs []error
	seen := map[string]bool{}
	for i, r := range f.Rules {
		where := fmt.Sprintf("rule %d (%s)", i+1, r.Name)
		if r.Name == "" {
			errs = append(errs, fmt.Errorf("rule %d: name is required", i+1))
			continue
		}
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("%s: name used twice", where))
		}
		seen[r.Name] = true
		switch r.Decision {
		case Allow, Deny:
			if r.Redact != nil {
				errs = append(errs, fmt.Errorf("%s: redact is only for decision redact", where))
			}
		case Redact:
			if r.Redact == nil || len(r.Redact.Paths) == 0 {
				errs = append(errs, fmt.Errorf("%s: decision redact needs redact.paths", where))
				continue
			}
			if r.Redact.In == "" {
				r.Redact.In = InTool
			}
			if r.Redact.In != InTool && r.Redact.In != InRecord {
				errs = append(errs, fmt.Errorf("%s: redact.in %q: want tool or record", where, r.Redact.In))
			}
			for _, path := range r.Redact.Paths {
				if path == "" || strings.Contains(path, "..") || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") {
					errs = append(errs, fmt.Errorf("%s: redact path %q: want dot-separated keys", where, path))
				}
			}
		default:
			errs = append(errs, fmt.Errorf("%s: decision %q: want allow, deny or redact", where, r.Decision))
			continue
		}
		ast, iss := env.Compile(r.When)
		if iss.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: when: %w", where, iss.Err()))
			continue
		}
		if ast.OutputType() != cel.BoolType {
			errs = append(errs, fmt.Errorf("%s: when must be a bool expression, is %s", where, ast.OutputType()))
			continue
		}
		opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
		// Tracking cost at run time is a third of a simple rule's
		// evaluation; it is only needed for rules whose cost depends on
		// the input (comprehensions and the like over arguments).
		if est, err := env.EstimateCost(ast, unknownSizes{}); err != nil || est.Max > costLimit {
			opts = append(opts, cel.CostLimit(costLimit))
		}
		prg, err := env.Program(ast, opts...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		for _, ref := range ast.NativeRep().ReferenceMap() {
			if _, ok := varIndex(ref.Name); ok {
				p.reads[ref.Name] = true
			}
		}
		p.rules = append(p.rules, compiled{Rule: r, prg: prg})
	}
	for i, t := range f.Tests {
		if t.Expect != Allow && t.Expect != Deny && t.Expect != Redact {
			errs = append(errs, fmt.Errorf("test %d (%s): expect %q: want allow, deny or redact", i+1, t.Name, t.Expect))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if !p.reads["args"] && !p.reads["session"] {
		if p.memo, err = lru.New[string, Decision](memoSize); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// unknownSizes gives the cost estimator no sizes: the estimate of a rule
// whose cost depends on its input is then unbounded, and it gets the run
// time limit.
type unknownSizes struct{}

func (unknownSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate { return nil }

func (unknownSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

func newEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Variable("actor", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("tool", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("method", cel.StringType),
		cel.Variable("scopes", cel.ListType(cel.StringType)),
		cel.Variable("args", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("data_class", cel.StringType),
		cel.Variable("session", cel.MapType(cel.StringType, cel.DynType)),
	)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	return env, nil
}

// Mode is Enforce or Staging.
func (p *Policy) Mode() string { return p.mode }

// Reads reports whether any rule reads the named variable ("args",
// "session", ...). A caller can then skip gathering an input no rule
// looks at: decoding a call's arguments or copying its session's history
// is most of what a policy costs on the call's path.
func (p *Policy) Reads(variable string) bool { return p.reads[variable] }

// Evaluate decides a call. A rule that fails to evaluate (a missing
// argument it did not guard with has(), the cost limit) does not match,
// and the error is returned alongside the decision of the rules after it
// so the caller can log it: a broken rule must be visible, but must not
// turn every call into an error.
func (p *Policy) Evaluate(in Input) (Decision, error) {
	if p.memo == nil {
		return p.evaluate(in)
	}
	key := in.memoKey()
	if d, ok := p.memo.Get(key); ok {
		return d, nil
	}
	d, err := p.evaluate(in)
	if err == nil { // a failing rule is evaluated (and reported) every time
		p.memo.Add(key, d)
	}
	return d, err
}

// memoKey is every input a rule can read except the arguments and the
// session, which memoized policies do not read. Each string is length
// prefixed, so no two inputs share a key whatever bytes they hold.
func (in *Input) memoKey() string {
	b := make([]byte, 0, 128)
	add := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	for _, f := range [...]string{in.Actor.ID, in.Actor.Type, in.Actor.OnBehalfOf, in.Tool.Name, in.Tool.Server, in.Tool.Group, in.Tool.Version, in.Method, in.DataClass} {
		add(f)
	}
	b = strconv.AppendBool(b, in.Tool.Write)
	for _, sc := range in.Scopes {
		add(sc)
	}
	return string(b)
}

func (p *Policy) evaluate(in Input) (Decision, error) {
	vars := &activation{in: &in}
	var errs []error
	for _, r := range p.rules {
		out, _, err := r.prg.Eval(vars)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", r.Name, err))
			continue
		}
		if match, ok := out.Value().(bool); ok && match {
			d := Decision{Effect: r.Decision, Rule: r.Name, Reason: r.Reason, Enforced: p.mode == Enforce}
			if r.Redact != nil {
				d.Redact, d.RedactIn = r.Redact.Paths, r.Redact.In
			}
			return d, errors.Join(errs...)
		}
	}
	return Decision{Effect: p.deflt, Reason: "no rule matched: default " + p.deflt, Enforced: p.mode == Enforce}, errors.Join(errs...)
}

// The rules' variables, as indices into activation.vals.
const (
	varActor = iota
	varTool
	varMethod
	varScopes
	varArgs
	varDataClass
	varSession
	numVars
)

func varIndex(name string) (int, bool) {
	switch name {
	case "actor":
		return varActor, true
	case "tool":
		return varTool, true
	case "method":
		return varMethod, true
	case "scopes":
		return varScopes, true
	case "args":
		return varArgs, true
	case "data_class":
		return varDataClass, true
	case "session":
		return varSession, true
	}
	return 0, false
}

// activation is the rules' view of an Input. Each variable is converted to
// a CEL value the first time a rule reads it and kept for the next rules:
// most rules read two or three variables, and converting all of them for
// every call was most of an evaluation's time and allocations.
type activation struct {
	in   *Input
	vals [numVars]ref.Val
}

func (a *activation) ResolveName(name string) (any, bool) {
	i, ok := varIndex(name)
	if !ok {
		return nil, false
	}
	if a.vals[i] == nil {
		a.vals[i] = a.convert(i)
	}
	return a.vals[i], true
}

func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) convert(i int) ref.Val {
	in, ad := a.in, types.DefaultTypeAdapter
	switch i {
	case varActor:
		return types.NewStringStringMap(ad, map[string]string{"id": in.Actor.ID, "type": in.Actor.Type, "on_behalf_of": in.Actor.OnBehalfOf})
	case varTool:
		return ad.NativeToValue(map[string]any{"name": in.Tool.Name, "server": in.Tool.Server, "group": in.Tool.Group, "version": in.Tool.Version, "write": in.Tool.Write})
	case varMethod:
		return types.String(in.Method)
	case varScopes:
		return types.NewStringList(ad, nonNil(in.Scopes))
	case varArgs:
		args := in.Args
		if args == nil {
			args = map[string]any{}
		}
		return ad.NativeToValue(args)
	case varDataClass:
		return types.String(in.DataClass)
	default: // session
		return ad.NativeToValue(map[string]any{"tools": nonNil(in.SessionTools)})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// TestResult is the outcome of one of the policy's test cases.
type TestResult struct {
	Name     string
	Passed   bool
	Got      Decision
	Expected string
	Rule     string
	Err      error
}

// RunTests runs the policy's own test cases.
func (p *Policy) RunTests() []TestResult {
	out := make([]TestResult, 0, len(p.tests))
	for i, t := range p.tests {
		name := t.Name
		if name == "" {
			name = fmt.Sprintf("test %d", i+1)
		}
		in := t.Input
		if in.Method == "" {
			in.Method = "tools/call"
		}
		d, err := p.Evaluate(in)
		ok := d.Effect == t.Expect && (t.Rule == "" || d.Rule == t.Rule)
		out = append(out, TestResult{Name: name, Passed: ok, Got: d, Expected: t.Expect, Rule: t.Rule, Err: err})
	}
	return out
}
