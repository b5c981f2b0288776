// Package discovery checks what an MCP server offers agents in tools/list,
// the way an agent's host will read it: each tool's input schema must
// compile as JSON Schema 2020-12 (MCP's default dialect) and describe an
// object, the tool and each of its parameters must say what they are (an
// agent picks tools and fills arguments from those descriptions alone),
// and every example the schema declares must validate against it. A
// server that fails these works in its own tests and misleads agents.
package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Problem is one thing wrong with one tool.
type Problem struct {
	Tool string `json:"tool"`
	// Path is where in the tool, as a JSON path ("$.inputSchema.properties.id").
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Tool + ": " + p.Path + ": " + p.Message }

// Tools lists every tool the session's server offers, following pages.
func Tools(ctx context.Context, cs *mcp.ClientSession) ([]*mcp.Tool, error) {
	var out []*mcp.Tool
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, fmt.Errorf("tools/list: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// Check returns the problems of each tool, in tool order; none for a
// server whose tools an agent can use as offered.
func Check(tools []*mcp.Tool) []Problem {
	var out []Problem
	seen := map[string]bool{}
	for _, t := range tools {
		if seen[t.Name] {
			out = append(out, Problem{Tool: t.Name, Path: "$.name", Message: "offered twice"})
		}
		seen[t.Name] = true
		out = append(out, checkTool(t)...)
	}
	return out
}

func checkTool(t *mcp.Tool) []Problem {
	var out []Problem
	add := func(path, format string, a ...any) {
		out = append(out, Problem{Tool: t.Name, Path: path, Message: fmt.Sprintf(format, a...)})
	}
	if t.Name == "" {
		add("$.name", "empty")
	}
	if t.Description == "" {
		add("$.description", "no description: agents choose a tool by it")
	}
	in, err := compile(t.InputSchema)
	if err != nil {
		add("$.inputSchema", "does not compile as JSON Schema 2020-12: %v", err)
	} else {
		doc := in.doc
		if typ, _ := doc["type"].(string); typ != "object" {
			add("$.inputSchema.type", "is %v; MCP tool arguments are an object", doc["type"])
		}
		props, _ := doc["properties"].(map[string]any)
		for _, name := range sortedKeys(props) {
			p, _ := props[name].(map[string]any)
			if d, _ := p["description"].(string); d == "" {
				add("$.inputSchema.properties."+name, "no description: agents fill arguments from it")
			}
			out = append(out, examples(t.Name, "$.inputSchema.properties."+name, in, "#/properties/"+name, p)...)
		}
		out = append(out, examples(t.Name, "$.inputSchema", in, "", doc)...)
	}
	if t.OutputSchema != nil {
		if _, err := compile(t.OutputSchema); err != nil {
			add("$.outputSchema", "does not compile as JSON Schema 2020-12: %v", err)
		}
	}
	return out
}

// compiled is one schema document and its compiler, from which the
// document's subschemas compile too.
type compiled struct {
	doc  map[string]any
	c    *jsonschema.Compiler
	root *jsonschema.Schema
}

const resource = "urn:proofline:tool-schema"

// compile compiles a tool's schema as it goes over the wire (its JSON
// form). References outside the document are refused: a schema from a
// server must not make the checker read files or the network.
func compile(schema any) (*compiled, error) {
	raw, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(jsonschema.SchemeURLLoader{})
	if err := c.AddResource(resource, doc); err != nil {
		return nil, err
	}
	root, err := c.Compile(resource)
	if err != nil {
		return nil, err
	}
	return &compiled{doc: doc, c: c, root: root}, nil
}

// examples validates the examples a (sub)schema declares against it.
func examples(tool, path string, in *compiled, fragment string, schema map[string]any) []Problem {
	ex, ok := schema["examples"]
	if !ok {
		return nil
	}
	list, ok := ex.([]any)
	if !ok {
		return []Problem{{Tool: tool, Path: path + ".examples", Message: "not an array"}}
	}
	sch := in.root
	if fragment != "" {
		var err error
		if sch, err = in.c.Compile(resource + fragment); err != nil {
			return []Problem{{Tool: tool, Path: path, Message: fmt.Sprintf("does not compile: %v", err)}}
		}
	}
	var out []Problem
	for i, e := range list {
		if err := sch.Validate(e); err != nil {
			out = append(out, Problem{Tool: tool, Path: fmt.Sprintf("%s.examples[%d]", path, i), Message: fmt.Sprintf("does not validate against the schema: %v", err)})
		}
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return slices.Clip(keys)
}
