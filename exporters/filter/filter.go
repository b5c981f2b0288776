// Package filter compiles a sink's `filter`: a CEL expression over the
// call record that decides whether the sink receives it, beyond routing
// by region and data class.
//
// The record is the variable `record`, the leaf's JSON as a map (so
// `record.outcome.status != "ok"`, `record.tool.server == "jira-mcp"`,
// `has(record.policy) && record.policy.decision == "deny"`). The
// expression must be a bool, checked when the exporters file is read.
// Evaluation has a cost limit, so a filter cannot stall delivery.
package filter

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
)

// costLimit bounds one evaluation (CEL's abstract cost units): far above
// any filter over one record's fields, far below a runaway
// comprehension.
const costLimit = 100_000

// Filter is a compiled sink filter. It is safe for concurrent use.
type Filter struct {
	src string
	prg cel.Program
}

// Compile parses and type-checks expr. The error names the position in
// expr of every problem.
func Compile(expr string) (*Filter, error) {
	env, err := cel.NewEnv(
		cel.Variable("record", cel.MapType(cel.StringType, cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
	)
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("the filter is a %s, it must be a bool", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &Filter{src: expr, prg: prg}, nil
}

// String is the filter's source.
func (f *Filter) String() string { return f.src }

// Match evaluates the filter on a record (a leaf's JSON object). An error
// (a field the record lacks, a type that does not fit, the cost limit) is
// not a "no": the runner dead-letters the record with it, so an
// expression that does not fit the data shows instead of silently
// dropping evidence.
func (f *Filter) Match(record []byte) (bool, error) {
	var m map[string]any
	if err := json.Unmarshal(record, &m); err != nil {
		return false, fmt.Errorf("filter: the record is not a JSON object: %w", err)
	}
	out, _, err := f.prg.Eval(map[string]any{"record": m})
	if err != nil {
		return false, fmt.Errorf("filter: %w", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errors.New("filter: the result is not a bool")
	}
	return b, nil
}
