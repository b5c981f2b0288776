package mcphook

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/proofline/proofline/schemas"
)

const elevationPolicy = `
version: 1
rules:
  - name: elevated-payments-need-an-approver
    when: '"payments:write" in elevation.scopes && elevation.approver == ""'
    decision: deny
    reason: elevation to payments:write needs an approver
  - name: crm-writes-need-the-scope
    when: tool.name == "crm_write" && !("payments:write" in scopes)
    decision: deny
    reason: crm_write needs payments:write
`

// TestElevationOnRecord: a call's elevation, from the gateway's _meta,
// is in its record whatever the decision; while unexpired its scopes
// count for the policy, which can require an approver; an expired one is
// recorded as such and grants nothing; one the hook cannot read refuses
// the call.
func TestElevationOnRecord(t *testing.T) {
	h := newHarness(t, Config{ElevationFromMeta: true}, elevationPolicy)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	cases := []struct {
		name      string
		elevation any // _meta["proofline/elevation"]; nil: none
		rule      string
		recorded  bool   // the record carries an elevation
		attr      string // attributes["proofline.elevation"]
	}{
		{"no elevation", nil, "crm-writes-need-the-scope", false, ""},
		{"approved", map[string]any{"scopes": []any{"payments:write"}, "approver": "bob@example.com", "reason": "INC-7", "expires": future}, "", true, ""},
		{"no approver", map[string]any{"scopes": []any{"payments:write"}, "reason": "INC-7"}, "elevated-payments-need-an-approver", true, ""},
		{"expired", map[string]any{"scopes": []any{"payments:write"}, "approver": "bob@example.com", "expires": past}, "crm-writes-need-the-scope", true, "expired"},
		{"unreadable", map[string]any{"scopes": "payments:write"}, "invalid-elevation", false, ""},
		{"unknown field", map[string]any{"scopes": []any{"payments:write"}, "ticket": "INC-7"}, "invalid-elevation", false, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			meta := mcp.Meta{}
			if tc.elevation != nil {
				meta[MetaElevation] = tc.elevation
			}
			ran := h.calls["crm_write"].Load()
			_, err := h.call("crm_write", nil, meta)
			if tc.rule == "" {
				if err != nil || h.calls["crm_write"].Load() != ran+1 {
					t.Fatalf("the approved elevated call: %v", err)
				}
			} else if err == nil || wireError(t, err).Code != CodePolicyDenied || h.calls["crm_write"].Load() != ran {
				t.Fatalf("answered %v, want a denial by %s without running the tool", err, tc.rule)
			}
			r := h.records(i + 1)[i]
			if r.Policy.Rule != tc.rule {
				t.Errorf("record's rule %q, want %q (%+v)", r.Policy.Rule, tc.rule, r.Policy)
			}
			if (r.Elevation != nil) != tc.recorded || r.Attributes["proofline.elevation"] != tc.attr {
				t.Fatalf("record's elevation %+v, attributes %v", r.Elevation, r.Attributes)
			}
			if tc.name == "approved" {
				e := r.Elevation
				if strings.Join(e.Scopes, ",") != "payments:write" || e.Approver != "bob@example.com" || e.Reason != "INC-7" || e.Expires == nil || e.Expires.UTC().Format(time.RFC3339) != future {
					t.Errorf("recorded elevation %+v", e)
				}
			}
		})
	}
}

// TestElevationFromMetaIsOptIn: without ElevationFromMeta, what a client
// writes into _meta grants nothing and is not recorded as an elevation.
func TestElevationFromMetaIsOptIn(t *testing.T) {
	h := newHarness(t, Config{}, elevationPolicy)
	_, err := h.call("crm_write", nil, mcp.Meta{MetaElevation: map[string]any{"scopes": []any{"payments:write"}, "approver": "me"}})
	if err == nil || wireError(t, err).Code != CodePolicyDenied {
		t.Fatalf("answered %v, want a denial", err)
	}
	if r := h.records(1)[0]; r.Elevation != nil || r.Policy.Rule != "crm-writes-need-the-scope" {
		t.Fatalf("record %+v %+v", r.Elevation, r.Policy)
	}
}

// TestClientHookCarriesItsElevation: an agent's client hook records its
// identity's elevation and hands it to the server in _meta, where a
// server hook that reads it records it too.
func TestClientHookCarriesItsElevation(t *testing.T) {
	h := newHarness(t, Config{ElevationFromMeta: true}, elevationPolicy)
	exp := schemas.Timestamp{Time: time.Now().Add(time.Hour).Truncate(time.Second)}
	id := Identity{ID: "agent-7", Type: schemas.ActorAgent, Elevation: &schemas.Elevation{
		Scopes: []string{"payments:write"}, Approver: "bob@example.com", Reason: "INC-7", Expires: &exp}}
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-7", Version: "1"}, nil)
	client.AddSendingMiddleware(h.hook.ClientMiddleware(id))
	srv := mcp.NewServer(&mcp.Implementation{Name: "tickets", Version: "1.2.0"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "crm_write"}, func(ctx context.Context, _ *mcp.CallToolRequest, in args) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
	})
	srv.AddReceivingMiddleware(h.hook.ServerMiddleware())
	cs := connect(t, srv, client)
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "crm_write"}); err != nil {
		t.Fatal(err)
	}
	recs := h.records(2)
	for _, r := range recs {
		e := r.Elevation
		if e == nil || e.Approver != "bob@example.com" || e.Expires == nil || !e.Expires.Equal(exp.Time) || r.Policy.Decision != schemas.DecisionAllow {
			t.Errorf("%s side recorded %+v %+v", r.Attributes["proofline.hook"], e, r.Policy)
		}
	}
}
