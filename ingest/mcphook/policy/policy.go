// Package policy decides, before a tool runs, whether an MCP call is
// allowed, denied or allowed with some arguments redacted. Rules are CEL
// expressions (github.com/google/cel-go) in a YAML file, evaluated in
// order; the first that matches decides.
//
// CEL rather than a home-made rule language: it is the language
// Kubernetes admission policies and Envoy use for the same job — side
// effect free, type checked when the file is loaded, and bounded in cost,
// so a policy cannot hang or crash the server it guards.
//
// A policy fails closed: its variables are typed (types.go), so a typo or
// a type mismatch in a rule stops the load with the file's line and
// column (load.go), and a rule that still fails on some call — an argument
// of the wrong type, a missing one, the cost limit — denies that call
// unless the file opts out with on_error: allow. A broken rule must never
// be a way around the policy.
package policy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	lru "github.com/hashicorp/golang-lru/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
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
	// OnError is what a rule that fails to evaluate decides: Deny (the
	// default) or Allow. A rule can override it.
	OnError string `yaml:"on_error"`
	// Tools declares tools' argument types, by tool name.
	Tools map[string]ToolDecl `yaml:"tools"`
	Rules []Rule              `yaml:"rules"`
	Tests []Test              `yaml:"tests"`
}

// ToolDecl is what a policy file declares about one tool.
type ToolDecl struct {
	// Args maps an argument's name to its type: ArgString, ArgNumber,
	// ArgInteger, ArgBoolean, ArgArray, ArgObject or ArgAny. In a rule
	// pinned to the tool (a top-level `tool.name == "NAME"` conjunct),
	// args is an object with exactly these fields: reading another is a
	// load error, comparing one with a value of another type is a load
	// error, and a call whose argument has another type (or lacks it)
	// makes the rule fail to evaluate.
	Args map[string]string `yaml:"args"`
}

// Rule is one CEL rule.
type Rule struct {
	Name     string     `yaml:"name"`
	When     string     `yaml:"when"`
	Decision string     `yaml:"decision"`
	Reason   string     `yaml:"reason"`
	Redact   *Redaction `yaml:"redact"`
	// OnError overrides the file's on_error for this rule.
	OnError string `yaml:"on_error"`
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
	// Error, when true, expects the deciding rule to have failed to
	// evaluate (and on_error to have decided).
	Error bool `yaml:"error"`
}

// Input is what rules see of a call. In CEL: actor.id, actor.type,
// actor.on_behalf_of, tool.name, tool.server, tool.group, tool.version
// (strings), tool.write (bool), method, data_class (strings), scopes
// (list of strings), args (the arguments as JSON values), session.tools
// (tools called earlier in the session, oldest first), elevation.scopes,
// elevation.approver, elevation.reason (the call's unexpired elevation;
// empty without one).
type Input struct {
	Actor     Actor          `yaml:"actor" json:"actor"`
	Tool      Tool           `yaml:"tool" json:"tool"`
	Method    string         `yaml:"method" json:"method"`
	Scopes    []string       `yaml:"scopes" json:"scopes"`
	Args      map[string]any `yaml:"args" json:"args"`
	DataClass string         `yaml:"data_class" json:"data_class"`
	// SessionTools are the tools called earlier in the same session.
	SessionTools []string `yaml:"session_tools" json:"session_tools"`
	// Elevation is the call's elevation while it has not expired; its
	// scopes are in Scopes too.
	Elevation Elevation `yaml:"elevation" json:"elevation"`
}

// Elevation is a grant of scopes beyond the caller's standing ones.
type Elevation struct {
	Scopes   []string `yaml:"scopes" json:"scopes"`
	Approver string   `yaml:"approver" json:"approver"`
	Reason   string   `yaml:"reason" json:"reason"`
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
	// Failed is true when Rule failed to evaluate and its on_error
	// decided (Deny): the call is refused because the policy could not
	// tell whether it may run.
	Failed bool
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
	// ruleErrors counts rules that failed to evaluate.
	ruleErrors metric.Int64Counter
}

// memoSize bounds the remembered decisions.
const memoSize = 4096

type compiled struct {
	Rule
	prg cel.Program
	// onError is the rule's effective on_error.
	onError string
	// errAttrs are the rule's attributes on the rule-error counter, made
	// once: a failing rule may fail on every call.
	errAttrs metric.AddOption
}

// Option configures Load, Parse and Compile.
type Option func(*options)

type options struct {
	mp metric.MeterProvider
}

// WithMeterProvider sets where the policy's metric goes:
// proofline.policy.rule_errors, a counter of rules that failed to
// evaluate, with the attributes policy.rule and policy.on_error. Without
// it the global MeterProvider is used, a no-op unless an OpenTelemetry
// SDK is installed (as the outbox does).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.mp = mp }
}

// Load reads and compiles a policy file. A file that does not load
// returns a *LoadError naming the file, and every problem's line and
// column in it.
func Load(path string, opts ...Option) (*Policy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(raw, opts...)
	var le *LoadError
	if errors.As(err, &le) {
		le.File = path
	}
	return p, err
}

// Parse compiles a policy from YAML. Every rule is type checked here, so a
// policy with a mistake fails when it is loaded, not at the first call it
// should have stopped. Its error is a *LoadError.
func Parse(raw []byte, opts ...Option) (*Policy, error) {
	f, pos, err := parseFile(raw)
	if err != nil {
		return nil, err
	}
	return compile(f, pos, opts)
}

// Compile compiles a policy built in Go. Its problems have no lines.
func Compile(f File, opts ...Option) (*Policy, error) {
	return compile(f, nil, opts)
}

func compile(f File, pos *positions, opts []Option) (*Policy, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var bad problems
	if f.Version != 0 && f.Version != 1 {
		bad.at(pos.topKey("version"), "version %d: this proofline reads version 1", f.Version)
	}
	p := &Policy{mode: f.Mode, deflt: f.Default, tests: f.Tests, reads: map[string]bool{}}
	if p.mode == "" {
		p.mode = Enforce
	}
	if p.mode != Enforce && p.mode != Staging {
		bad.at(pos.topKey("mode"), "mode %q: want enforce or staging", f.Mode)
	}
	if p.deflt == "" {
		p.deflt = Allow
	}
	if p.deflt != Allow && p.deflt != Deny {
		bad.at(pos.topKey("default"), "default %q: want allow or deny", f.Default)
	}
	onError := f.OnError
	if onError == "" {
		onError = Deny
	}
	if onError != Allow && onError != Deny {
		bad.at(pos.topKey("on_error"), "on_error %q: want deny or allow", f.OnError)
	}
	toolNames := make([]string, 0, len(f.Tools))
	for name := range f.Tools {
		toolNames = append(toolNames, name)
	}
	sort.Strings(toolNames)
	for _, name := range toolNames {
		for _, sp := range validateSchema(f.Tools[name].Args) {
			bad.at(pos.arg(name, sp.arg), "tools.%s.args.%s: %s", name, sp.arg, sp.msg)
		}
	}
	if len(bad) > 0 {
		// The rules are checked against the declarations: with a broken
		// one, their errors would only repeat it.
		return nil, &LoadError{Problems: bad}
	}
	envs, err := newEnvs(f.Tools)
	if err != nil {
		return nil, err
	}
	mp := o.mp
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	p.ruleErrors, err = mp.Meter("github.com/proofline/proofline/ingest/mcphook/policy").Int64Counter("proofline.policy.rule_errors",
		metric.WithDescription("Policy rules that failed to evaluate; each decided its on_error."), metric.WithUnit("{error}"))
	if err != nil {
		return nil, fmt.Errorf("policy metrics: %w", err)
	}
	seen := map[string]bool{}
	for i, r := range f.Rules {
		where := fmt.Sprintf("rule %d (%s)", i+1, r.Name)
		at := func(key string) *yaml.Node { return pos.rule(i, key) }
		if r.Name == "" {
			bad.at(at(""), "rule %d: name is required", i+1)
			continue
		}
		if seen[r.Name] {
			bad.at(at("name"), "%s: name used twice", where)
		}
		seen[r.Name] = true
		if r.OnError == "" {
			r.OnError = onError
		}
		if r.OnError != Allow && r.OnError != Deny {
			bad.at(at("on_error"), "%s: on_error %q: want deny or allow", where, r.OnError)
		}
		switch r.Decision {
		case Allow, Deny:
			if r.Redact != nil {
				bad.at(at("redact"), "%s: redact is only for decision redact", where)
			}
		case Redact:
			if r.Redact == nil || len(r.Redact.Paths) == 0 {
				bad.at(at("decision"), "%s: decision redact needs redact.paths", where)
				continue
			}
			if r.Redact.In == "" {
				r.Redact.In = InTool
			}
			if r.Redact.In != InTool && r.Redact.In != InRecord {
				bad.at(at("redact"), "%s: redact.in %q: want tool or record", where, r.Redact.In)
			}
			for _, path := range r.Redact.Paths {
				if path == "" || strings.Contains(path, "..") || strings.HasPrefix(path, ".") || strings.HasSuffix(path, ".") {
					bad.at(at("redact"), "%s: redact path %q: want dot-separated keys", where, path)
				}
			}
		default:
			bad.at(at("decision"), "%s: decision %q: want allow, deny or redact", where, r.Decision)
			continue
		}
		env, ast, issues := envs.check(r.When)
		if issues != nil {
			bad = append(bad, pos.celProblems(issues, pos.rule(i, "when"), where+": when: ")...)
			continue
		}
		if !ast.OutputType().IsExactType(cel.BoolType) {
			bad.at(at("when"), "%s: when must be a bool expression, is %s", where, ast.OutputType())
			continue
		}
		prg, err := program(env, ast)
		if err != nil {
			bad.at(at("when"), "%s: %v", where, err)
			continue
		}
		for _, ref := range ast.NativeRep().ReferenceMap() {
			if _, ok := varIndex(ref.Name); ok {
				p.reads[ref.Name] = true
			}
		}
		p.rules = append(p.rules, compiled{Rule: r, prg: prg, onError: r.OnError,
			errAttrs: metric.WithAttributeSet(attribute.NewSet(attribute.String("policy.rule", r.Name), attribute.String("policy.on_error", r.OnError)))})
	}
	for i, t := range f.Tests {
		if t.Expect != Allow && t.Expect != Deny && t.Expect != Redact {
			bad.at(pos.test(i, "expect"), "test %d (%s): expect %q: want allow, deny or redact", i+1, t.Name, t.Expect)
		}
	}
	if len(bad) > 0 {
		return nil, &LoadError{Problems: bad}
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

// envs are the CEL environments rules are checked in: one where args is a
// map of JSON values, and one per tool with declared arguments, where it
// is that tool's object type.
type envs struct {
	untyped *cel.Env
	typed   map[string]*cel.Env
}

func newEnvs(tools map[string]ToolDecl) (*envs, error) {
	structs := fixedTypes()
	for name, decl := range tools {
		if len(decl.Args) > 0 {
			st := argsType(name, decl.Args)
			structs[st.t.TypeName()] = st
		}
	}
	base, err := cel.NewEnv(
		cel.CustomTypeProvider(&provider{base: types.NewEmptyRegistry(), structs: structs}),
		cel.Variable("actor", cel.ObjectType(actorTypeName)),
		cel.Variable("tool", cel.ObjectType(toolTypeName)),
		cel.Variable("method", cel.StringType),
		cel.Variable("scopes", cel.ListType(cel.StringType)),
		cel.Variable("data_class", cel.StringType),
		cel.Variable("session", cel.ObjectType(sessionTypeName)),
		cel.Variable("elevation", cel.ObjectType(elevationTypeName)),
		// JSON numbers are doubles: `args.amount > 1000` must not need
		// `1000.0` to load.
		cel.CrossTypeNumericComparisons(true),
	)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	e := &envs{typed: map[string]*cel.Env{}}
	if e.untyped, err = base.Extend(cel.Variable("args", cel.MapType(cel.StringType, cel.DynType))); err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	for name, decl := range tools {
		if len(decl.Args) == 0 {
			continue
		}
		if e.typed[name], err = base.Extend(cel.Variable("args", cel.ObjectType(argsTypeName(name)))); err != nil {
			return nil, fmt.Errorf("cel environment for %s: %w", name, err)
		}
	}
	return e, nil
}

// check parses and type checks one rule, in its tool's environment when
// it is pinned to a tool with declared arguments.
func (e *envs) check(src string) (*cel.Env, *cel.Ast, *cel.Issues) {
	parsed, iss := e.untyped.Parse(src)
	if iss.Err() != nil {
		return nil, nil, iss
	}
	env := e.untyped
	if tool, ok := pinnedTool(parsed); ok && e.typed[tool] != nil {
		env = e.typed[tool]
	}
	checked, iss := env.Check(parsed)
	if iss.Err() != nil {
		return nil, nil, iss
	}
	return env, checked, nil
}

func program(env *cel.Env, ast *cel.Ast) (cel.Program, error) {
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	// Tracking cost at run time is a third of a simple rule's
	// evaluation; it is only needed for rules whose cost depends on the
	// input (comprehensions and the like over arguments).
	if est, err := env.EstimateCost(ast, unknownSizes{}); err != nil || est.Max > costLimit {
		opts = append(opts, cel.CostLimit(costLimit))
	}
	return env.Program(ast, opts...)
}

// Mode is Enforce or Staging.
func (p *Policy) Mode() string { return p.mode }

// Reads reports whether any rule reads the named variable ("args",
// "session", ...). A caller can then skip gathering an input no rule
// looks at: decoding a call's arguments or copying its session's history
// is most of what a policy costs on the call's path.
func (p *Policy) Reads(variable string) bool { return p.reads[variable] }

// Evaluate decides a call. A rule that fails to evaluate (a type error on
// the call's arguments, an argument it reads that the call lacks, the cost
// limit) decides its on_error: Deny (the default) refuses the call with
// Decision.Failed set, Allow passes over the rule to the next ones. Either
// way the error is returned alongside the decision, for the caller to log,
// and counted in proofline.policy.rule_errors.
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
	// '#' cannot start a length prefix: the elevation's part cannot be
	// taken for more scopes.
	b = append(b, '#')
	b = strconv.AppendInt(b, int64(len(in.Elevation.Scopes)), 10)
	for _, sc := range in.Elevation.Scopes {
		add(sc)
	}
	add(in.Elevation.Approver)
	add(in.Elevation.Reason)
	return string(b)
}

func (p *Policy) evaluate(in Input) (Decision, error) {
	vars := &activation{in: &in}
	var errs []error
	for i := range p.rules {
		r := &p.rules[i]
		out, _, err := r.prg.Eval(vars)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", r.Name, err))
			// Evaluate has no context of its own; the counter needs none.
			p.ruleErrors.Add(context.Background(), 1, r.errAttrs)
			if r.onError == Deny {
				return Decision{Effect: Deny, Rule: r.Name, Reason: failedReason(r.Name, err), Enforced: p.mode == Enforce, Failed: true}, errors.Join(errs...)
			}
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

// failedReason is the recorded reason of a call refused because a rule
// failed. It goes into the call record, which never holds argument
// values, so only an ArgError (names and types) is quoted: CEL's own
// messages can include values ("cannot convert '…' to int"); they are in
// the error Evaluate returns, for the log.
func failedReason(rule string, err error) string {
	reason := "rule " + rule + " failed to evaluate (on_error: deny)"
	if ae := (*ArgError)(nil); errors.As(err, &ae) {
		reason += ": " + ae.Error()
	}
	return reason
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
	varElevation
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
	case "elevation":
		return varElevation, true
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
		return object{st: actorStruct, v: &in.Actor}
	case varTool:
		return object{st: toolStruct, v: &in.Tool}
	case varMethod:
		return types.String(in.Method)
	case varScopes:
		return types.NewStringList(ad, nonNil(in.Scopes))
	case varArgs:
		// A map of JSON values in every rule; in a rule typed by a tool's
		// declared arguments its fields are read from this same map
		// (argsType), so it is converted once for all rules.
		args := in.Args
		if args == nil {
			args = map[string]any{}
		}
		return types.NewStringInterfaceMap(ad, args)
	case varDataClass:
		return types.String(in.DataClass)
	case varElevation:
		return object{st: elevationStruct, v: &in.Elevation}
	default: // session
		return object{st: sessionStruct, v: &session{tools: in.SessionTools}}
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
	// ExpectError is the case's `error: true`: the deciding rule must
	// have failed to evaluate.
	ExpectError bool
	Err         error
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
		ok := d.Effect == t.Expect && (t.Rule == "" || d.Rule == t.Rule) && (!t.Error || d.Failed)
		out = append(out, TestResult{Name: name, Passed: ok, Got: d, Expected: t.Expect, Rule: t.Rule, ExpectError: t.Error, Err: err})
	}
	return out
}
