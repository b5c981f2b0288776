package mcphook

import (
	"context"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/proofline/proofline/schemas"
)

// TestCatalogRecords: with RecordCatalog, the first tools/list answer
// records every tool (registered), a second unchanged one nothing; a
// tool whose input schema changes is recorded as changed, one that is
// gone as removed. Each record carries the digests, owner and group.
func TestCatalogRecords(t *testing.T) {
	h := newHarness(t, Config{RecordCatalog: true, Tools: map[string]ToolConfig{"search_tickets": {Group: "ticketing", Owner: "team-support"}}}, "")
	list := func() {
		t.Helper()
		if _, err := h.session.ListTools(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	catalogRecords := func(n int) []*schemas.CallRecord {
		t.Helper()
		var out []*schemas.CallRecord
		for _, r := range h.records(n) {
			if r.MCP != nil && r.MCP.Method == MethodCatalog {
				out = append(out, r)
			}
		}
		return out
	}
	list()
	list()
	// Two tools/list call records, and one catalog record per tool (9).
	recs := catalogRecords(11)
	if len(recs) != 9 {
		t.Fatalf("%d catalog records after two listings, want 9", len(recs))
	}
	byName := map[string]*schemas.CallRecord{}
	for _, r := range recs {
		byName[r.Tool.Name] = r
		if r.Attributes[AttrCatalogChange] != CatalogRegistered || r.Attributes[AttrCatalogInputSchema] == "" || r.Actor.Type != schemas.ActorService {
			t.Errorf("catalog record %+v %v", r.Tool, r.Attributes)
		}
	}
	if r := byName["search_tickets"]; r == nil || r.Tool.Group != "ticketing" || r.Attributes[AttrCatalogOwner] != "team-support" || r.Tool.Server != "tickets" {
		t.Fatalf("search_tickets' catalog record %+v", r)
	}
	before := byName["crm_read"].Attributes[AttrCatalogInputSchema]

	// The server changes one tool's parameters and drops another.
	srv := h.server
	srv.AddTool(&mcp.Tool{Name: "crm_read", Description: "crm_read", InputSchema: map[string]any{"type": "object",
		"properties": map[string]any{"account": map[string]any{"type": "string"}}}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{}, nil
	})
	srv.RemoveTools("blocking")
	list()
	recs = catalogRecords(14)
	changes := map[string]string{}
	for _, r := range recs[9:] {
		changes[r.Tool.Name] = r.Attributes[AttrCatalogChange]
		if r.Tool.Name == "crm_read" && (r.Attributes[AttrCatalogInputSchema] == before || r.Attributes[AttrCatalogInputSchema] == "") {
			t.Errorf("the changed tool's schema digest %q (was %q)", r.Attributes[AttrCatalogInputSchema], before)
		}
	}
	if len(changes) != 2 || changes["crm_read"] != CatalogChanged || changes["blocking"] != CatalogRemoved {
		t.Fatalf("changes recorded %v", changes)
	}
}
