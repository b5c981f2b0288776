package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"gopkg.in/yaml.v3"
)

// LoadError is a policy that does not load. It lists every problem found,
// each at its line and column in the policy file, so that one run of
// `proofline policy test` shows all of them where an editor can jump.
type LoadError struct {
	// File is the policy file's path; empty for Parse and Compile.
	File     string
	Problems []Problem
}

// Problem is one mistake in a policy file.
type Problem struct {
	// Line and Column are 1-based; 0 when the problem has no place in
	// the file (Compile of a File built in Go).
	Line, Column int
	Msg          string
}

// Error is one line per problem, "FILE:LINE:COL: message" as compilers
// write them ("policy" stands for the file when there is no path).
func (e *LoadError) Error() string {
	name := e.File
	if name == "" {
		name = "policy"
	}
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(name)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
			if p.Column > 0 {
				fmt.Fprintf(&b, ":%d", p.Column)
			}
		}
		b.WriteString(": ")
		b.WriteString(p.Msg)
	}
	return b.String()
}

// positions are where the parts of a policy file are in its source, from
// yaml.v3's node tree. The zero value (a File built in Go) knows nothing.
type positions struct {
	lines []string
	top   map[string]*yaml.Node
	rules []map[string]*yaml.Node // per rule: key → value node, "" → the rule
	tests []map[string]*yaml.Node
	args  map[string]map[string]*yaml.Node // tool → argument → type node
}

func (p *positions) rule(i int, key string) *yaml.Node {
	if p == nil || i >= len(p.rules) {
		return nil
	}
	if n := p.rules[i][key]; n != nil {
		return n
	}
	return p.rules[i][""]
}

func (p *positions) test(i int, key string) *yaml.Node {
	if p == nil || i >= len(p.tests) {
		return nil
	}
	if n := p.tests[i][key]; n != nil {
		return n
	}
	return p.tests[i][""]
}

func (p *positions) topKey(key string) *yaml.Node {
	if p == nil {
		return nil
	}
	return p.top[key]
}

func (p *positions) arg(tool, arg string) *yaml.Node {
	if p == nil {
		return nil
	}
	if n := p.args[tool][arg]; n != nil {
		return n
	}
	return p.top["tools"]
}

// problems collects a policy's problems.
type problems []Problem

func (ps *problems) at(n *yaml.Node, format string, a ...any) {
	p := Problem{Msg: fmt.Sprintf(format, a...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	*ps = append(*ps, p)
}

// mapping is a mapping node's key → value nodes; "" is the node itself.
func mapping(n *yaml.Node) map[string]*yaml.Node {
	m := map[string]*yaml.Node{"": n}
	if n == nil || n.Kind != yaml.MappingNode {
		return m
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = n.Content[i+1]
	}
	return m
}

func sequence(n *yaml.Node) []map[string]*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]map[string]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		out[i] = mapping(item)
	}
	return out
}

// parseFile decodes a policy file, keeping where each part is. Unknown
// keys are errors: a misspelt `on_eror:` must not silently keep the
// default.
func parseFile(raw []byte) (File, *positions, error) {
	var f File
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return f, nil, &LoadError{Problems: yamlProblems(err)}
	}
	if len(root.Content) == 0 {
		return f, nil, &LoadError{Problems: []Problem{{Msg: "the policy file is empty"}}}
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return f, nil, &LoadError{Problems: yamlProblems(err)}
	}
	pos := &positions{lines: strings.Split(string(raw), "\n"), top: mapping(root.Content[0]), args: map[string]map[string]*yaml.Node{}}
	pos.rules = sequence(pos.top["rules"])
	pos.tests = sequence(pos.top["tests"])
	for tool, decl := range mapping(pos.top["tools"]) {
		if tool != "" {
			pos.args[tool] = mapping(mapping(decl)["args"])
		}
	}
	return f, pos, nil
}

var (
	yamlLine     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// yamlProblems turns yaml.v3's errors ("yaml: line 3: …", or a TypeError
// listing "line 3: …" per mistake) into problems at their lines, without
// the "yaml:" prefix.
func yamlProblems(err error) []Problem {
	var msgs []string
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	out := make([]Problem, 0, len(msgs))
	for _, m := range msgs {
		p := Problem{Msg: strings.TrimPrefix(m, "yaml: ")}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			p.Line, _ = strconv.Atoi(sm[1])
			p.Msg = sm[2]
		}
		if sm := unknownField.FindStringSubmatch(p.Msg); sm != nil {
			p.Msg = fmt.Sprintf("unknown key %q", sm[1])
		}
		out = append(out, p)
	}
	return out
}

// celProblems places a rule's CEL errors in the policy file: CEL counts
// lines and columns within the expression ("<input>:1:20"), the author
// reads the file. where is the `when:` value node (nil without
// positions).
func (p *positions) celProblems(iss *cel.Issues, where *yaml.Node, prefix string) []Problem {
	var out []Problem
	for _, e := range iss.Errors() {
		line, col := 0, 0
		msg := prefix + e.Message
		if where != nil {
			var exact bool
			line, col, exact = p.locate(where, e.Location.Line(), e.Location.Column())
			if !exact {
				msg += fmt.Sprintf(" (at %d:%d of the expression)", e.Location.Line(), e.Location.Column()+1)
			}
		}
		out = append(out, Problem{Line: line, Column: col, Msg: msg})
	}
	return out
}

// locate maps a position in a scalar's value (1-based line, 0-based
// column, as CEL reports it) to the file's 1-based line and column.
// Exact for the styles a rule is written in: a plain or quoted scalar on
// one line, and a literal block (|). Otherwise — a folded or multi-line
// flow scalar, whose line breaks YAML has folded away — it is the start
// of the scalar, and exact is false.
func (p *positions) locate(n *yaml.Node, line, col int) (fileLine, fileCol int, exact bool) {
	fileLine, fileCol = n.Line, n.Column
	if line < 1 || col < 0 || n.Line < 1 || n.Line > len(p.lines) {
		return fileLine, fileCol, false
	}
	src := []rune(p.lines[n.Line-1])
	switch {
	case n.Style&yaml.LiteralStyle != 0:
		// The value's line i is the file's line n.Line+i, indented by the
		// block's indentation (that of its first non-blank line).
		indent := -1
		for l := n.Line; l < len(p.lines); l++ {
			if t := strings.TrimLeft(p.lines[l], " "); t != "" {
				indent = len(p.lines[l]) - len(t)
				break
			}
		}
		if indent < 0 || n.Line+line > len(p.lines) {
			return fileLine, fileCol, false
		}
		return n.Line + line, indent + col + 1, true
	case strings.Contains(n.Value, "\n") || line != 1 || n.Style&yaml.FoldedStyle != 0:
		return fileLine, fileCol, false
	case n.Style&yaml.SingleQuotedStyle != 0:
		// '' in the source is one ' in the value.
		return n.Line, scanQuoted(src, n.Column, col, func(src []rune, i int) int {
			if src[i] == '\'' && i+1 < len(src) && src[i+1] == '\'' {
				return 2
			}
			return 1
		}), true
	case n.Style&yaml.DoubleQuotedStyle != 0:
		// A backslash escape is two source characters for one (\uXXXX
		// and the like are rare in a rule; they shift the column).
		return n.Line, scanQuoted(src, n.Column, col, func(src []rune, i int) int {
			if src[i] == '\\' && i+1 < len(src) {
				return 2
			}
			return 1
		}), true
	default: // plain
		if utf8.RuneCountInString(n.Value) > len(src) {
			return fileLine, fileCol, false
		}
		return n.Line, n.Column + col, true
	}
}

// scanQuoted walks a quoted scalar's source from its opening quote at
// 1-based column start, to the source column of the value's 0-based
// column col; width is how many source characters one value character
// takes at i.
func scanQuoted(src []rune, start, col int, width func([]rune, int) int) int {
	i := start // 0-based index of the first character after the quote
	for k := 0; k < col && i < len(src); k++ {
		i += width(src, i)
	}
	return i + 1
}
