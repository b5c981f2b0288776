package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// The rules' variables are typed: actor, tool and session are CEL objects
// with a fixed set of fields, so that `tool.nmae` (no such field) or
// `tool.name > 5` (a string compared with a number) fail when the policy
// loads instead of erroring on every call. args is a map of JSON values,
// except in a rule pinned to a tool whose arguments the policy file
// declares (tools.NAME.args): there it is an object with those fields.
//
// The types come from a types.Provider of our own rather than
// ext.NativeTypes: NativeTypes reads struct fields through reflection on
// every access, and it cannot describe argument schemas, which exist only
// in the policy file.
const (
	actorTypeName     = "proofline.Actor"
	toolTypeName      = "proofline.Tool"
	sessionTypeName   = "proofline.Session"
	elevationTypeName = "proofline.Elevation"
)

// Argument types a policy file can declare (tools.NAME.args.ARG), named
// as in JSON Schema, the language of an MCP tool's inputSchema.
const (
	ArgString  = "string"
	ArgNumber  = "number"  // CEL double; JSON numbers are doubles
	ArgInteger = "integer" // CEL int; a JSON number without a fraction
	ArgBoolean = "boolean"
	ArgArray   = "array"  // CEL list(dyn)
	ArgObject  = "object" // CEL map(string, dyn)
	ArgAny     = "any"    // CEL dyn: declared, so reading it is not a typo, but unchecked
)

var argCELTypes = map[string]*types.Type{
	ArgString:  types.StringType,
	ArgNumber:  types.DoubleType,
	ArgInteger: types.IntType,
	ArgBoolean: types.BoolType,
	ArgArray:   types.NewListType(types.DynType),
	ArgObject:  types.NewMapType(types.StringType, types.DynType),
	ArgAny:     types.DynType,
}

// argTypeNames lists the argument types for error messages.
const argTypeNames = "string, number, integer, boolean, array, object or any"

// identifier is what `args.NAME` can select: a declared argument that is
// not one can never be read by a typed rule.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// structType is one object type: its CEL type and its fields.
type structType struct {
	t      *types.Type
	names  []string
	fields map[string]*types.FieldType
}

// field describes one field of a structType; get receives the object's
// Value().
type field struct {
	t   *types.Type
	get func(target any) (ref.Val, error)
	// isSet is nil when the field always has a value.
	isSet func(target any) bool
}

func newStructType(name string, fields map[string]field) *structType {
	st := &structType{t: types.NewObjectType(name, traits.IndexerType|traits.FieldTesterType), fields: map[string]*types.FieldType{}}
	for n, f := range fields {
		f := f
		isSet := f.isSet
		if isSet == nil {
			isSet = func(any) bool { return true }
		}
		st.fields[n] = &types.FieldType{
			Type:    f.t,
			IsSet:   isSet,
			GetFrom: func(target any) (any, error) { return f.get(target) },
		}
		st.names = append(st.names, n)
	}
	sort.Strings(st.names)
	return st
}

// provider adds the policy's object types to CEL's own.
type provider struct {
	base    types.Provider
	structs map[string]*structType
}

func (p *provider) EnumValue(name string) ref.Val { return p.base.EnumValue(name) }

func (p *provider) FindIdent(name string) (ref.Val, bool) { return p.base.FindIdent(name) }

func (p *provider) FindStructType(name string) (*types.Type, bool) {
	if st, ok := p.structs[name]; ok {
		return types.NewTypeTypeWithParam(st.t), true
	}
	return p.base.FindStructType(name)
}

func (p *provider) FindStructFieldNames(name string) ([]string, bool) {
	if st, ok := p.structs[name]; ok {
		return slices.Clone(st.names), true
	}
	return p.base.FindStructFieldNames(name)
}

func (p *provider) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if st, ok := p.structs[name]; ok {
		ft, ok := st.fields[fieldName]
		return ft, ok
	}
	return p.base.FindStructFieldType(name, fieldName)
}

// NewValue refuses to build the policy's types: a rule describes a call,
// it has no use for making up another one.
func (p *provider) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.structs[name]; ok {
		return types.NewErr("%s values cannot be created in a rule", name)
	}
	return p.base.NewValue(name, fields)
}

// session is the session variable's value.
type session struct{ tools []string }

func stringField(get func(any) (string, bool)) field {
	return field{t: types.StringType, get: func(target any) (ref.Val, error) {
		s, ok := get(target)
		if !ok {
			return nil, fmt.Errorf("no such field on %T", target)
		}
		return types.String(s), nil
	}}
}

func actorField(f func(*Actor) string) field {
	return stringField(func(t any) (string, bool) {
		a, ok := t.(*Actor)
		if !ok {
			return "", false
		}
		return f(a), true
	})
}

func toolField(f func(*Tool) string) field {
	return stringField(func(t any) (string, bool) {
		x, ok := t.(*Tool)
		if !ok {
			return "", false
		}
		return f(x), true
	})
}

// The fixed object types, built once (they never change).
var (
	actorStruct = newStructType(actorTypeName, map[string]field{
		"id":           actorField(func(a *Actor) string { return a.ID }),
		"type":         actorField(func(a *Actor) string { return a.Type }),
		"on_behalf_of": actorField(func(a *Actor) string { return a.OnBehalfOf }),
	})
	toolStruct = newStructType(toolTypeName, map[string]field{
		"name":    toolField(func(t *Tool) string { return t.Name }),
		"server":  toolField(func(t *Tool) string { return t.Server }),
		"group":   toolField(func(t *Tool) string { return t.Group }),
		"version": toolField(func(t *Tool) string { return t.Version }),
		"write": {t: types.BoolType, get: func(target any) (ref.Val, error) {
			t, ok := target.(*Tool)
			if !ok {
				return nil, fmt.Errorf("no such field on %T", target)
			}
			return types.Bool(t.Write), nil
		}},
	})
	sessionStruct = newStructType(sessionTypeName, map[string]field{
		"tools": {t: types.NewListType(types.StringType), get: func(target any) (ref.Val, error) {
			s, ok := target.(*session)
			if !ok {
				return nil, fmt.Errorf("no such field on %T", target)
			}
			return types.NewStringList(types.DefaultTypeAdapter, nonNil(s.tools)), nil
		}},
	})
)

func elevationField(f func(*Elevation) string) field {
	return stringField(func(t any) (string, bool) {
		e, ok := t.(*Elevation)
		if !ok {
			return "", false
		}
		return f(e), true
	})
}

var elevationStruct = newStructType(elevationTypeName, map[string]field{
	"approver": elevationField(func(e *Elevation) string { return e.Approver }),
	"reason":   elevationField(func(e *Elevation) string { return e.Reason }),
	"scopes": {t: types.NewListType(types.StringType), get: func(target any) (ref.Val, error) {
		e, ok := target.(*Elevation)
		if !ok {
			return nil, fmt.Errorf("no such field on %T", target)
		}
		return types.NewStringList(types.DefaultTypeAdapter, nonNil(e.Scopes)), nil
	}},
})

// fixedTypes are actor, tool, session and elevation, in a map of the policy's own.
func fixedTypes() map[string]*structType {
	return map[string]*structType{actorTypeName: actorStruct, toolTypeName: toolStruct, sessionTypeName: sessionStruct, elevationTypeName: elevationStruct}
}

// argsTypeName is the CEL type of args in a rule pinned to tool. It is
// never written in a rule, only shown in error messages.
func argsTypeName(tool string) string { return "args(" + tool + ")" }

// argsType is the object type of a tool's declared arguments. Its value
// is the call's arguments map itself (map[string]any, as decoded from
// JSON): each field read checks the argument against its declared type,
// so an argument of another type is an evaluation error of the rule that
// reads it — which then fails closed — rather than a comparison that
// quietly does not match.
func argsType(tool string, schema map[string]string) *structType {
	fields := make(map[string]field, len(schema))
	for name, kind := range schema {
		fields[name] = field{
			t: argCELTypes[kind],
			get: func(target any) (ref.Val, error) {
				m, _ := target.(map[string]any)
				v, ok := m[name]
				if !ok {
					return nil, &ArgError{Tool: tool, Arg: name, Want: kind}
				}
				return convertArg(tool, name, kind, v)
			},
			isSet: func(target any) bool {
				m, _ := target.(map[string]any)
				_, ok := m[name]
				return ok
			},
		}
	}
	return newStructType(argsTypeName(tool), fields)
}

// ArgError is an argument that is missing or not of the type the policy
// file declares. Its message names the argument and the types, never the
// value, so it can go into the call record.
type ArgError struct {
	Tool, Arg string
	// Want is the declared type; Got the JSON type of the value, empty
	// when the argument is missing.
	Want, Got string
}

func (e *ArgError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("argument %q of %s is missing (declared %s)", e.Arg, e.Tool, e.Want)
	}
	return fmt.Sprintf("argument %q of %s is %s, declared %s", e.Arg, e.Tool, e.Got, e.Want)
}

func convertArg(tool, name, kind string, v any) (ref.Val, error) {
	mismatch := func() (ref.Val, error) {
		return nil, &ArgError{Tool: tool, Arg: name, Want: kind, Got: jsonKind(v)}
	}
	switch kind {
	case ArgString:
		if s, ok := v.(string); ok {
			return types.String(s), nil
		}
	case ArgBoolean:
		if b, ok := v.(bool); ok {
			return types.Bool(b), nil
		}
	case ArgNumber:
		if f, ok := toFloat(v); ok {
			return types.Double(f), nil
		}
	case ArgInteger:
		if f, ok := toFloat(v); ok && f == math.Trunc(f) && f >= math.MinInt64 && f < math.MaxInt64 {
			if i, ok := v.(int64); ok { // beyond a double's 53 bits
				return types.Int(i), nil
			}
			return types.Int(int64(f)), nil
		}
	case ArgArray:
		if v != nil && reflect.TypeOf(v).Kind() == reflect.Slice {
			return types.DefaultTypeAdapter.NativeToValue(v), nil
		}
	case ArgObject:
		if v != nil && reflect.TypeOf(v).Kind() == reflect.Map {
			return types.DefaultTypeAdapter.NativeToValue(v), nil
		}
	case ArgAny:
		return types.DefaultTypeAdapter.NativeToValue(v), nil
	}
	return mismatch()
}

// toFloat accepts the numbers JSON (float64, json.Number) and YAML test
// inputs (int) decode to.
func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, !math.IsNaN(x) && !math.IsInf(x, 0)
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

// jsonKind names a decoded JSON value's type in JSON Schema's words.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return ArgString
	case bool:
		return ArgBoolean
	}
	if _, ok := toFloat(v); ok {
		return ArgNumber
	}
	switch reflect.TypeOf(v).Kind() {
	case reflect.Slice, reflect.Array:
		return ArgArray
	case reflect.Map:
		return ArgObject
	}
	return fmt.Sprintf("%T", v)
}

// object is a value of one of the policy's object types. Value() is what
// the fields' getters read.
type object struct {
	st *structType
	v  any
}

func (o object) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("%s cannot be converted to %v", o.st.t.TypeName(), t)
}

func (o object) ConvertToType(t ref.Type) ref.Val {
	switch t.TypeName() {
	case types.TypeType.TypeName():
		return o.st.t
	case o.st.t.TypeName():
		return o
	}
	return types.NewErr("type conversion error from '%s' to '%s'", o.st.t.TypeName(), t.TypeName())
}

func (o object) Equal(other ref.Val) ref.Val {
	p, ok := other.(object)
	return types.Bool(ok && p.st == o.st && reflect.DeepEqual(o.v, p.v))
}

func (o object) Type() ref.Type { return o.st.t }

func (o object) Value() any { return o.v }

// Get and IsSet serve field reads the type checker could not resolve
// (through dyn()).
func (o object) Get(key ref.Val) ref.Val {
	ft, ok := o.fieldType(key)
	if !ok {
		return types.NewErr("no such field: %v", key)
	}
	v, err := ft.GetFrom(o.v)
	if err != nil {
		return types.WrapErr(err)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

func (o object) IsSet(key ref.Val) ref.Val {
	ft, ok := o.fieldType(key)
	if !ok {
		return types.NewErr("no such field: %v", key)
	}
	return types.Bool(ft.IsSet(o.v))
}

func (o object) fieldType(key ref.Val) (*types.FieldType, bool) {
	name, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	ft, ok := o.st.fields[string(name)]
	return ft, ok
}

type celExpr = celast.Expr

const (
	exprCall    = celast.CallKind
	exprSelect  = celast.SelectKind
	exprIdent   = celast.IdentKind
	exprLiteral = celast.LiteralKind
)

// pinnedTool is the tool a rule is about, when one of its top-level
// conjuncts is `tool.name == "NAME"` (either way round): only for such a
// call can the rule see the tool's arguments, so only there are they
// typed by the tool's declared schema.
func pinnedTool(ast *cel.Ast) (string, bool) {
	var names []string
	var walk func(e celExpr)
	walk = func(e celExpr) {
		if e.Kind() != exprCall {
			return
		}
		c := e.AsCall()
		switch c.FunctionName() {
		case "_&&_":
			for _, a := range c.Args() {
				walk(a)
			}
		case "_==_":
			args := c.Args()
			if len(args) != 2 {
				return
			}
			for i, sel := range args {
				if name, ok := stringLiteral(args[1-i]); ok && isToolName(sel) {
					names = append(names, name)
				}
			}
		}
	}
	walk(ast.NativeRep().Expr())
	if len(names) == 0 {
		return "", false
	}
	for _, n := range names[1:] {
		if n != names[0] {
			return "", false // a rule that never matches; not ours to type
		}
	}
	return names[0], true
}

func isToolName(e celExpr) bool {
	if e.Kind() != exprSelect {
		return false
	}
	s := e.AsSelect()
	op := s.Operand()
	return !s.IsTestOnly() && s.FieldName() == "name" && op.Kind() == exprIdent && op.AsIdent() == "tool"
}

func stringLiteral(e celExpr) (string, bool) {
	if e.Kind() != exprLiteral {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// schemaProblem is a mistake in one declared argument.
type schemaProblem struct{ arg, msg string }

// validateSchema reports what is wrong with one tool's declared arguments.
func validateSchema(schema map[string]string) []schemaProblem {
	var bad []schemaProblem
	names := make([]string, 0, len(schema))
	for n := range schema {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !identifier.MatchString(n) {
			bad = append(bad, schemaProblem{n, "not a CEL identifier, so a rule cannot write args." + n + "; leave it out"})
		}
		if _, ok := argCELTypes[schema[n]]; !ok {
			bad = append(bad, schemaProblem{n, fmt.Sprintf("type %q: want %s", schema[n], argTypeNames)})
		}
	}
	return bad
}
