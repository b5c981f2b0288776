package spanstore

import (
	"context"
	"testing"
	"time"

	"github.com/proofline/proofline/schemas"
)

// catalogSpan is a catalog record as the MCP hook writes it.
func catalogSpan(id, server, tool, version, change, inputSHA string, at time.Time, leaf uint64) Span {
	sp := span(id, tool, "ticketing", at, 0, leaf)
	r := sp.Record
	r.Tool.Server, r.Tool.Version = server, version
	r.Actor = schemas.Actor{ID: "mcphook", Type: schemas.ActorService}
	r.MCP = &schemas.MCP{Method: schemas.MethodCatalog}
	r.Trace, r.Cost = nil, nil
	r.Attributes = map[string]string{attrCatalogChange: change, attrCatalogOwner: "team-support"}
	if inputSHA != "" {
		r.Attributes[attrCatalogInputSchema] = inputSHA
	}
	return sp
}

// TestToolCatalog: catalog records go to the tool catalog, never among
// the spans; each tool's versions are listed in order, a re-listing after
// a producer restart is not a version, an input schema that changed under
// the same version is flagged as drift, a removal is shown; onboarding's
// lead time runs from the registration.
func TestToolCatalog(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	t0 := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	in := []Span{
		catalogSpan("c1", "jira", "search", "1.0", "registered", "aaaa", t0, 0),
		catalogSpan("c2", "jira", "search", "1.0", "registered", "aaaa", t0.Add(time.Minute), 1), // a restart
		catalogSpan("c3", "jira", "search", "1.0", "changed", "bbbb", t0.Add(2*time.Minute), 2),  // drift
		catalogSpan("c4", "jira", "create", "1.0", "registered", "cccc", t0, 3),
		catalogSpan("c5", "jira", "create", "1.1", "changed", "dddd", t0.Add(time.Minute), 4), // a new version
		catalogSpan("c6", "jira", "create", "1.1", "removed", "", t0.Add(2*time.Minute), 5),
		span("call-1", "search", "ticketing", t0.Add(time.Hour), time.Millisecond, 6),
		span("call-2", "search", "ticketing", t0.Add(2*time.Hour), time.Millisecond, 7),
	}
	in[6].Record.Outcome = schemas.Outcome{Status: schemas.StatusToolError}
	in[6].Record.Tool.Server, in[7].Record.Tool.Server = "jira", "jira"
	if err := s.Insert(ctx, in); err != nil {
		t.Fatal(err)
	}
	page, err := s.Spans(ctx, SpanFilter{})
	if err != nil || len(page.Spans) != 2 {
		t.Fatalf("spans: %+v %v; want the two calls only", page, err)
	}
	cat, err := s.Catalog(ctx)
	if err != nil || len(cat) != 2 {
		t.Fatalf("catalog: %+v %v", cat, err)
	}
	create, search := cat[0], cat[1]
	if search.Name != "search" || len(search.Versions) != 2 || !search.SchemaDrift || search.Removed || !search.Registered.Equal(t0) ||
		search.Owner != "team-support" || search.Group != "ticketing" || search.Current.InputSchemaSHA256 != "bbbb" || search.Current.LeafIndex != 2 {
		t.Errorf("search: %+v", search)
	}
	if create.Name != "create" || len(create.Versions) != 3 || create.SchemaDrift || !create.Removed || create.Current.Version != "1.1" {
		t.Errorf("create: %+v", create)
	}
	rows, err := s.Onboarding(ctx)
	if err != nil || len(rows) != 1 {
		t.Fatalf("onboarding: %+v %v", rows, err)
	}
	if r := rows[0]; r.Registered == nil || !r.Registered.Equal(t0) || r.LeadTimeHours == nil || *r.LeadTimeHours < 1.99 || *r.LeadTimeHours > 2.01 {
		t.Errorf("onboarding of search: %+v (lead %v), want 2 h from its registration", r, r.LeadTimeHours)
	}
}
