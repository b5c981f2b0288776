package discovery

import (
	"context"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type searchIn struct {
	Query string `json:"query" jsonschema:"text to look for in ticket titles"`
	Limit int    `json:"limit,omitempty" jsonschema:"at most this many tickets"`
}

// TestCheckToolsAsAnAgentSeesThem: tools offered by a real SDK server,
// listed over the SDK's client, are checked: a well described tool (its
// schema inferred from Go types) passes; each defect is reported with its
// tool and path.
func TestCheckToolsAsAnAgentSeesThem(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "s", Version: "1"}, nil)
	noop := func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "search", Description: "Search tickets."},
		func(context.Context, *mcp.CallToolRequest, searchIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
	for _, tool := range []*mcp.Tool{
		{Name: "good_examples", Description: "d", InputSchema: map[string]any{"type": "object",
			"properties": map[string]any{"id": map[string]any{"type": "integer", "description": "ticket id", "examples": []any{1, 42}}},
			"examples":   []any{map[string]any{"id": 7}}}},
		{Name: "undescribed", InputSchema: map[string]any{"type": "object",
			"properties": map[string]any{"id": map[string]any{"type": "integer"}, "why": map[string]any{"type": "string", "description": ""}}}},
		{Name: "bad_examples", Description: "d", InputSchema: map[string]any{"type": "object", "required": []any{"id"},
			"properties": map[string]any{"id": map[string]any{"type": "integer", "description": "ticket id", "examples": []any{"seven"}}},
			"examples":   []any{map[string]any{}}}},
		{Name: "not_a_schema", Description: "d", InputSchema: map[string]any{"type": "object", "properties": map[string]any{"id": map[string]any{"type": 12}}}},
		{Name: "remote_ref", Description: "d", InputSchema: map[string]any{"type": "object", "$ref": "file:///etc/passwd"}},
		{Name: "bad_output", Description: "d", InputSchema: map[string]any{"type": "object"}, OutputSchema: map[string]any{"type": "object", "minProperties": "two"}},
	} {
		srv.AddTool(tool, noop)
	}
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "checker"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := Tools(context.Background(), cs)
	if err != nil || len(tools) != 7 {
		t.Fatalf("listed %d tools: %v", len(tools), err)
	}
	got := map[string][]string{}
	for _, p := range Check(tools) {
		got[p.Tool] = append(got[p.Tool], p.Path+": "+p.Message)
	}
	for tool, want := range map[string][]string{
		"search":        nil,
		"good_examples": nil,
		"undescribed":   {"$.description: no description", "$.inputSchema.properties.id: no description", "$.inputSchema.properties.why: no description"},
		"bad_examples":  {"$.inputSchema.properties.id.examples[0]: does not validate", "$.inputSchema.examples[0]: does not validate"},
		"not_a_schema":  {"$.inputSchema: does not compile"},
		"remote_ref":    {"$.inputSchema: does not compile"},
		"bad_output":    {"$.outputSchema: does not compile"},
	} {
		if len(got[tool]) != len(want) {
			t.Errorf("%s: problems %q, want %d like %q", tool, got[tool], len(want), want)
			continue
		}
		for i, w := range want {
			if !strings.HasPrefix(got[tool][i], w) {
				t.Errorf("%s: problem %q, want %q…", tool, got[tool][i], w)
			}
		}
	}
}
