package encode_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/encode"
)

// ecsFields are the ECS fields the documents use, with their ECS types, as
// ECS 9.4.0 defines them (generated/ecs/ecs_flat.yml of elastic/ecs at tag
// v9.4.0). A document field outside this set and outside the custom
// proofline.* object is a name ECS does not define.
var ecsFields = map[string]string{
	"@timestamp": "date", "ecs.version": "keyword", "message": "match_only_text",
	"event.kind": "keyword", "event.category": "keyword", "event.type": "keyword", "event.outcome": "keyword",
	"event.action": "keyword", "event.id": "keyword", "event.dataset": "keyword", "event.module": "keyword",
	"event.start": "date", "event.end": "date", "event.duration": "long", "event.sequence": "long",
	"event.severity": "long", "event.original": "keyword", "event.hash": "keyword", "event.reason": "keyword",
	"observer.vendor": "keyword", "observer.product": "keyword", "observer.version": "keyword",
	"user.id": "keyword", "user.name": "keyword", "user.effective.id": "keyword", "user.effective.name": "keyword",
	"related.user": "keyword", "service.type": "keyword", "service.name": "keyword", "service.version": "keyword",
	"gen_ai.operation.name": "keyword", "gen_ai.tool.name": "keyword", "gen_ai.tool.call.id": "keyword",
	"gen_ai.agent.id": "keyword", "trace.id": "keyword", "span.id": "keyword",
	"rule.name": "keyword", "rule.description": "keyword", "error.code": "keyword", "error.message": "match_only_text",
	"labels": "object",
}

// The ECS categorization fields' allowed values (ECS 9.4.0, "ECS
// Categorization Fields"), and the event.type values expected with each
// category this encoder uses.
var (
	ecsKinds    = []string{"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}
	ecsOutcomes = []string{"failure", "success", "unknown"}
	ecsTypesFor = map[string][]string{
		"api":      {"access", "admin", "allowed", "change", "creation", "deletion", "denied", "end", "info", "start", "user"},
		"database": {"access", "change", "info", "error"},
	}
)

// flatten turns a document into dotted field names → values, stopping at
// labels (an ECS object of keywords) and proofline (the custom object).
func flatten(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && name != "labels" && name != "proofline" {
			flatten(name, sub, out)
			continue
		}
		out[name] = v
	}
}

// ecsErrors checks a document against the ECS definitions above: known
// names with values of their type, allowed categorization values, and
// event.type values that the categories expect.
func ecsErrors(doc map[string]any) []string {
	b, _ := json.Marshal(doc)
	var generic map[string]any
	_ = json.Unmarshal(b, &generic)
	flat := map[string]any{}
	flatten("", generic, flat)
	var errs []string
	for name, v := range flat {
		if name == "proofline" {
			continue
		}
		typ, ok := ecsFields[name]
		if !ok {
			errs = append(errs, name+": not an ECS field")
			continue
		}
		bad := func(want string) { errs = append(errs, fmt.Sprintf("%s: %v is not %s", name, v, want)) }
		switch typ {
		case "keyword", "match_only_text":
			switch x := v.(type) {
			case string:
			case []any:
				for _, e := range x {
					if _, ok := e.(string); !ok {
						bad("a list of strings")
					}
				}
			default:
				bad("a string")
			}
		case "date":
			s, _ := v.(string)
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				bad("an RFC 3339 date")
			}
		case "long":
			f, ok := v.(float64)
			if !ok || f != float64(int64(f)) {
				bad("an integer")
			}
		case "object":
			m, ok := v.(map[string]any)
			for _, e := range m {
				if _, isStr := e.(string); !isStr {
					ok = false
				}
			}
			if !ok {
				bad("an object of keywords")
			}
		}
	}
	strs := func(v any) []string {
		var out []string
		switch x := v.(type) {
		case string:
			out = []string{x}
		case []any:
			for _, e := range x {
				out = append(out, fmt.Sprint(e))
			}
		}
		return out
	}
	if k, _ := flat["event.kind"].(string); !slices.Contains(ecsKinds, k) {
		errs = append(errs, fmt.Sprintf("event.kind %q is not an allowed value", k))
	}
	if o, ok := flat["event.outcome"].(string); ok && !slices.Contains(ecsOutcomes, o) {
		errs = append(errs, fmt.Sprintf("event.outcome %q is not an allowed value", o))
	}
	cats := strs(flat["event.category"])
	for _, typ := range strs(flat["event.type"]) {
		expected := false
		for _, c := range cats {
			expected = expected || slices.Contains(ecsTypesFor[c], typ)
		}
		if !expected {
			errs = append(errs, fmt.Sprintf("event.type %q is not expected with event.category %v", typ, cats))
		}
	}
	for _, c := range cats {
		if _, ok := ecsTypesFor[c]; !ok {
			errs = append(errs, fmt.Sprintf("event.category %q is not an allowed value here", c))
		}
	}
	sort.Strings(errs)
	return errs
}

func TestECSDocumentsUseECSFieldsAndValues(t *testing.T) {
	ev := func(rec string) exporters.Event {
		return exporters.Event{Evidence: exporters.Evidence{Origin: "proofline.test/log", LeafIndex: 41, TreeSize: 99, RecordID: "r-1"}, Record: []byte(rec)}
	}
	base := `"record_id":"r-1","ts_start":"2026-12-01T10:00:00.000000000Z","ts_end":"2026-12-01T10:00:00.120000000Z","actor":{"id":"agent-7","type":"agent","on_behalf_of":"alice@example.com"}`
	tests := []struct {
		name string
		rec  string
		want map[string]any // dotted field → value (as JSON decodes it); nil: must be absent
	}{
		{"allowed read-only call with trace", `{` + base + `,"tool":{"name":"search","server":"jira-mcp","version":"1.2","group":"ticketing"},"policy":{"decision":"allow"},"outcome":{"status":"ok"},"trace":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","parent_span_id":"00f067aa0ba902b6"},"attributes":{"mcp.tool.read_only":"true"},"mcp":{"method":"tools/call","request_id":"7","session_id":"s","transport":"http"},"args_sha256":"ab"}`,
			map[string]any{"event.kind": "event", "event.category": []any{"api"}, "event.type": []any{"allowed", "access"},
				"event.outcome": "success", "event.action": "tools/call", "event.id": "r-1", "event.duration": 120e6,
				"event.dataset": "proofline.calls", "event.module": "proofline", "event.sequence": 41.0,
				"@timestamp": "2026-12-01T10:00:00Z", "user.id": "agent-7", "user.effective.id": "alice@example.com",
				"service.name": "jira-mcp", "service.version": "1.2", "gen_ai.tool.name": "search", "gen_ai.tool.call.id": "7",
				"gen_ai.operation.name": "execute_tool", "gen_ai.agent.id": "agent-7",
				"trace.id": "4bf92f3577b34da6a3ce929d0e0e4736", "span.id": "00f067aa0ba902b7", "rule.name": nil,
				"labels": map[string]any{"tool_group": "ticketing"}, "ecs.version": encode.ECSVersion}},
		{"denied destructive call", `{` + base + `,"tool":{"name":"delete_ticket","server":"jira-mcp"},"policy":{"decision":"deny","rule":"no-deletes","reason":"agents may not delete"},"outcome":{"status":"policy_blocked","error_code":"-32080"},"attributes":{"mcp.tool.destructive":"true"}}`,
			map[string]any{"event.type": []any{"denied", "deletion"}, "event.outcome": "failure", "rule.name": "no-deletes",
				"rule.description": "agents may not delete", "event.reason": "agents may not delete", "error.code": "-32080",
				"trace.id": nil, "gen_ai.tool.call.id": nil}},
		{"redacted call by a service, no annotations", `{"record_id":"r-1","ts_start":"2026-12-01T10:00:00Z","ts_end":"2026-12-01T10:00:01Z","actor":{"id":"svc","type":"service"},"tool":{"name":"send_email"},"policy":{"decision":"redact","rule":"mask"},"outcome":{"status":"system_error","error_message":"upstream 502"},"region":"eu","data_class":"pii"}`,
			map[string]any{"event.type": []any{"allowed"}, "event.outcome": "failure", "error.message": "upstream 502",
				"labels": map[string]any{"region": "eu", "data_class": "pii"}, "gen_ai.agent.id": nil, "user.effective.id": nil,
				"service.name": nil, "event.duration": 1e9}},
		{"call under an approved elevation", `{` + base + `,"tool":{"name":"transfer_funds"},"policy":{"decision":"allow"},"outcome":{"status":"ok"},"elevation":{"scopes":["payments:write"],"approver":"bob@example.com","reason":"INC-7","expires":"2026-12-01T11:00:00.000000000Z"}}`,
			map[string]any{"event.outcome": "success", "gen_ai.tool.name": "transfer_funds"}},
		{"a status proofline does not know", `{` + base + `,"tool":{"name":"x"},"policy":{"decision":"allow"},"outcome":{"status":"cancelled"},"attributes":{"mcp.tool.read_only":"false"}}`,
			map[string]any{"event.outcome": "unknown", "event.type": []any{"allowed", "change"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := ev(tc.rec)
			doc, err := encode.ECS(e, "1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			if errs := ecsErrors(doc); len(errs) > 0 {
				t.Fatalf("not an ECS document:\n%s", strings.Join(errs, "\n"))
			}
			b, _ := json.Marshal(doc)
			var generic map[string]any
			_ = json.Unmarshal(b, &generic)
			flat := map[string]any{}
			flatten("", generic, flat)
			for k, want := range tc.want {
				got, ok := flat[k]
				if want == nil {
					if ok {
						t.Errorf("%s = %v, want it absent", k, got)
					}
					continue
				}
				if k == "@timestamp" {
					ts, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(got))
					wt, _ := time.Parse(time.RFC3339Nano, want.(string))
					if !ts.Equal(wt) {
						t.Errorf("@timestamp = %v, want %v", got, want)
					}
					continue
				}
				if gj, wj := fmt.Sprint(got), fmt.Sprint(want); gj != wj {
					t.Errorf("%s = %v, want %v", k, got, want)
				}
			}
			// The evidence, and what an inclusion proof checks: the leaf
			// bytes and their RFC 6962 leaf hash.
			pl := generic["proofline"].(map[string]any)
			if pl["log_origin"] != "proofline.test/log" || pl["leaf_index"] != 41.0 || pl["tree_size"] != 99.0 || pl["record_id"] != "r-1" {
				t.Fatalf("evidence: %v", pl)
			}
			if el, _ := pl["elevation"].(map[string]any); strings.Contains(tc.rec, `"elevation"`) != (el != nil) ||
				el != nil && (el["approver"] != "bob@example.com" || fmt.Sprint(el["scopes"]) != "[payments:write]" || el["reason"] != "INC-7" || el["expires"] != "2026-12-01T11:00:00Z") {
				t.Fatalf("proofline.elevation: %v", pl["elevation"])
			}
			if flat["event.original"] != tc.rec {
				t.Fatal("event.original is not the leaf")
			}
			h := sha256.Sum256(append([]byte{0}, tc.rec...))
			if flat["event.hash"] != hex.EncodeToString(h[:]) || pl["leaf_hash"] != flat["event.hash"] {
				t.Fatalf("event.hash %v is not the RFC 6962 leaf hash", flat["event.hash"])
			}
			if encode.ECSID(e.Evidence) != "proofline.test/log:41" {
				t.Fatalf("document id %q", encode.ECSID(e.Evidence))
			}
		})
	}
	a := encode.ECSAnchor(&exporters.Anchor{Origin: "proofline.test/log", TreeSize: 99, RootHash: []byte{1, 2}, Note: []byte("proofline.test/log\n99\nAQI=\n\n— sig\n")}, "1.0.0")
	if errs := ecsErrors(a); len(errs) > 0 {
		t.Fatalf("the checkpoint document is not ECS:\n%s", strings.Join(errs, "\n"))
	}
	evm := a["event"].(map[string]any)
	if evm["kind"] != "state" || evm["action"] != "checkpoint" || evm["dataset"] != encode.ECSDatasetCheckpoints {
		t.Fatalf("checkpoint event: %v", evm)
	}
}

// The checker must refuse what ECS does not define, or the test above
// proves nothing.
func TestECSCheckerRejectsNonECSDocuments(t *testing.T) {
	good := func() map[string]any {
		return map[string]any{"@timestamp": "2026-12-01T10:00:00Z", "event": map[string]any{"kind": "event", "category": []string{"api"}, "type": []string{"allowed"}, "outcome": "success"}}
	}
	tests := []struct {
		name   string
		mutate func(map[string]any)
		want   string
	}{
		{"unknown kind", func(d map[string]any) { d["event"].(map[string]any)["kind"] = "call" }, `event.kind "call"`},
		{"unknown outcome", func(d map[string]any) { d["event"].(map[string]any)["outcome"] = "ok" }, `event.outcome "ok"`},
		{"type not expected with api", func(d map[string]any) { d["event"].(map[string]any)["type"] = []string{"connection"} }, `event.type "connection"`},
		{"made-up field", func(d map[string]any) { d["tool"] = map[string]any{"name": "x"} }, "tool.name: not an ECS field"},
		{"duration as text", func(d map[string]any) { d["event"].(map[string]any)["duration"] = "120ms" }, "event.duration"},
		{"nested labels", func(d map[string]any) { d["labels"] = map[string]any{"a": map[string]any{"b": "c"}} }, "labels"},
	}
	if errs := ecsErrors(good()); len(errs) > 0 {
		t.Fatalf("a good document fails: %v", errs)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := good()
			tc.mutate(d)
			errs := strings.Join(ecsErrors(d), "\n")
			if !strings.Contains(errs, tc.want) {
				t.Fatalf("errors %q do not mention %q", errs, tc.want)
			}
		})
	}
}
