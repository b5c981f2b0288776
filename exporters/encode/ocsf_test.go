package encode_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/config"
	"github.com/proofline/proofline/exporters/encode"
)

// ocsfSchema is the official OCSF schema snapshot shipped beside the
// repository (../shared/ocsf-schema): this test validates emitted events
// against its own class, object, profile and dictionary files, not against
// anything written here.
type ocsfSchema struct {
	root  string
	dict  map[string]attrDef
	types map[string]json.RawMessage
}

type attrDef struct {
	Profile     string                     `json:"-"` // the profile that adds it, if any
	Type        string                     `json:"type"`
	IsArray     bool                       `json:"is_array"`
	Requirement string                     `json:"requirement"`
	Enum        map[string]json.RawMessage `json:"enum"`
}

type defFile struct {
	Name        string                     `json:"name"`
	Extends     string                     `json:"extends"`
	UID         int                        `json:"uid"`
	Attributes  map[string]json.RawMessage `json:"attributes"`
	Constraints map[string][]string        `json:"constraints"`
}

// schemaRoot finds the snapshot: OCSF_SCHEMA_DIR when set (a clone that
// is not beside shared/), else shared/ocsf-schema beside the repository.
func schemaRoot(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("OCSF_SCHEMA_DIR"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "dictionary.json")); err != nil {
			t.Fatalf("OCSF_SCHEMA_DIR=%s is not an OCSF schema snapshot: %v", dir, err)
		}
		return dir
	}
	for _, p := range []string{"../../../shared/ocsf-schema", "../../../../shared/ocsf-schema"} {
		if _, err := os.Stat(filepath.Join(p, "dictionary.json")); err == nil {
			return p
		}
	}
	t.Fatal("the OCSF schema snapshot is missing: shared/ocsf-schema beside the repository, or OCSF_SCHEMA_DIR")
	return ""
}

func loadJSON(t *testing.T, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

func newSchema(t *testing.T) *ocsfSchema {
	root := schemaRoot(t)
	var d struct {
		Attributes map[string]attrDef `json:"attributes"`
		Types      struct {
			Attributes map[string]json.RawMessage `json:"attributes"`
		} `json:"types"`
	}
	loadJSON(t, filepath.Join(root, "dictionary.json"), &d)
	return &ocsfSchema{root: root, dict: d.Attributes, types: d.Types.Attributes}
}

// resolved is a class or object with its extends chain and includes merged.
type resolved struct {
	attrs       map[string]attrDef
	constraints map[string][]string
}

// merge applies an attribute definition from a class/object/profile over
// the dictionary's (and over what a parent defined).
func (s *ocsfSchema) merge(t *testing.T, into map[string]attrDef, raw map[string]json.RawMessage, profile string) {
	for name, r := range raw {
		if name == "$include" {
			var incs []string
			json.Unmarshal(r, &incs)
			for _, inc := range incs {
				var f defFile
				loadJSON(t, filepath.Join(s.root, inc), &f)
				prof := profile
				if strings.HasPrefix(inc, "profiles/") {
					prof = f.Name
				}
				s.merge(t, into, f.Attributes, prof)
			}
			continue
		}
		var over attrDef
		json.Unmarshal(r, &over)
		base, ok := into[name]
		if !ok {
			base = s.dict[name]
			base.Requirement = ""
			base.Enum = maps.Clone(base.Enum)
		}
		if over.Requirement != "" {
			base.Requirement = over.Requirement
		}
		if !ok || profile == "" {
			// A class's own definition makes the attribute part of the
			// class, whatever profile first brought it in.
			base.Profile = profile
		}
		if over.Type != "" {
			base.Type = over.Type
		}
		if over.Enum != nil {
			if base.Enum == nil {
				base.Enum = map[string]json.RawMessage{}
			}
			maps.Copy(base.Enum, over.Enum)
		}
		into[name] = base
	}
}

func (s *ocsfSchema) resolve(t *testing.T, path string) resolved {
	var f defFile
	loadJSON(t, path, &f)
	r := resolved{attrs: map[string]attrDef{}, constraints: map[string][]string{}}
	if f.Extends != "" {
		var parent string
		if strings.Contains(path, "/objects/") {
			parent = filepath.Join(s.root, "objects", f.Extends+".json")
		} else {
			m, _ := filepath.Glob(filepath.Join(s.root, "events", "*", f.Extends+".json"))
			m2, _ := filepath.Glob(filepath.Join(s.root, "events", f.Extends+".json"))
			m = append(m, m2...)
			if len(m) != 1 {
				t.Fatalf("parent %s of %s: %v", f.Extends, path, m)
			}
			parent = m[0]
		}
		p := s.resolve(t, parent)
		r.attrs, r.constraints = p.attrs, p.constraints
	}
	s.merge(t, r.attrs, f.Attributes, "")
	maps.Copy(r.constraints, f.Constraints)
	return r
}

// validate checks v against the resolved definition, collecting problems
// with their JSON path; topRecommended also requires recommended
// attributes at this level.
func (s *ocsfSchema) validate(t *testing.T, path string, v map[string]any, def resolved, topRecommended bool, profiles map[string]bool, errs *[]string) {
	for name, a := range def.attrs {
		if a.Profile != "" && !profiles[a.Profile] {
			continue // the event does not apply the profile that adds it
		}
		_, present := v[name]
		if !present && (a.Requirement == "required" || topRecommended && a.Requirement == "recommended" && !notApplicable[name]) {
			*errs = append(*errs, fmt.Sprintf("%s.%s: %s attribute missing", path, name, a.Requirement))
		}
	}
	for k, atLeast := range def.constraints {
		n := 0
		for _, name := range atLeast {
			if _, ok := v[name]; ok {
				n++
			}
		}
		if k == "at_least_one" && n == 0 || k == "just_one" && n != 1 {
			*errs = append(*errs, fmt.Sprintf("%s: constraint %s %v", path, k, atLeast))
		}
	}
	for name, val := range v {
		a, ok := def.attrs[name]
		if ok && a.Profile != "" && !profiles[a.Profile] {
			*errs = append(*errs, fmt.Sprintf("%s.%s: belongs to profile %s, which metadata.profiles does not list", path, name, a.Profile))
			continue
		}
		if !ok {
			*errs = append(*errs, fmt.Sprintf("%s.%s: not an attribute of this class/object", path, name))
			continue
		}
		if a.IsArray {
			arr, ok := val.([]any)
			if !ok {
				*errs = append(*errs, fmt.Sprintf("%s.%s: want an array", path, name))
				continue
			}
			for i, el := range arr {
				s.value(t, fmt.Sprintf("%s.%s[%d]", path, name, i), el, a, profiles, errs)
			}
			continue
		}
		if name == "class_uid" || name == "category_uid" {
			// Their enums are generated from the class files; checked below.
			a.Enum = nil
		}
		s.value(t, path+"."+name, val, a, profiles, errs)
	}
}

// notApplicable are recommended attributes with nothing to say for an MCP
// tool call (no HTTP request of its own, no source port).
var notApplicable = map[string]bool{"http_request": true, "http_response": true, "observables": true, "timezone_offset": true, "confidence_id": true}

func (s *ocsfSchema) value(t *testing.T, path string, val any, a attrDef, profiles map[string]bool, errs *[]string) {
	if a.Enum != nil {
		f, ok := val.(float64)
		if !ok || a.Enum[fmt.Sprint(int64(f))] == nil {
			keys := slices.Collect(maps.Keys(a.Enum))
			sort.Strings(keys)
			*errs = append(*errs, fmt.Sprintf("%s: %v is not one of %v", path, val, keys))
			return
		}
	}
	typ := a.Type
	// Scalar types resolve through the dictionary's types to a base.
	for {
		raw, ok := s.types[typ]
		if !ok {
			break
		}
		var td struct {
			Type string `json:"type"`
		}
		json.Unmarshal(raw, &td)
		if td.Type == "" || td.Type == typ {
			break
		}
		typ = td.Type
	}
	bad := func(want string) { *errs = append(*errs, fmt.Sprintf("%s: %v is not %s", path, val, want)) }
	switch typ {
	case "string_t":
		if _, ok := val.(string); !ok {
			bad("a string")
		}
	case "integer_t", "long_t":
		if f, ok := val.(float64); !ok || f != math.Trunc(f) {
			bad("an integer")
		}
	case "float_t":
		if _, ok := val.(float64); !ok {
			bad("a number")
		}
	case "boolean_t":
		if _, ok := val.(bool); !ok {
			bad("a boolean")
		}
	case "json_t":
	case "object":
		if _, ok := val.(map[string]any); !ok {
			bad("an object")
		}
	default:
		obj, ok := val.(map[string]any)
		if !ok {
			bad("an object of type " + typ)
			return
		}
		p := filepath.Join(s.root, "objects", typ+".json")
		if _, err := os.Stat(p); err != nil {
			*errs = append(*errs, fmt.Sprintf("%s: unknown type %s", path, typ))
			return
		}
		s.validate(t, path, obj, s.resolve(t, p), false, profiles, errs)
	}
}

func ocsfErrors(t *testing.T, s *ocsfSchema, ev map[string]any) []string {
	b, _ := json.Marshal(ev)
	var generic map[string]any
	json.Unmarshal(b, &generic)
	class := s.resolve(t, filepath.Join(s.root, "events", "application", "api_activity.json"))
	profiles := map[string]bool{}
	if md, ok := generic["metadata"].(map[string]any); ok {
		ps, _ := md["profiles"].([]any)
		for _, p := range ps {
			profiles[fmt.Sprint(p)] = true
		}
	}
	var errs []string
	s.validate(t, "$", generic, class, true, profiles, &errs)
	// Rules the schema states in prose.
	cu, _ := generic["class_uid"].(float64)
	ai, _ := generic["activity_id"].(float64)
	tu, _ := generic["type_uid"].(float64)
	if cu != 6003 || generic["category_uid"] != 6.0 || tu != cu*100+ai {
		errs = append(errs, fmt.Sprintf("class_uid %v category_uid %v type_uid %v activity_id %v", cu, generic["category_uid"], tu, ai))
	}
	sort.Strings(errs)
	return errs
}

func TestOCSFEventsValidateAgainstTheOfficialSchema(t *testing.T) {
	s := newSchema(t)
	ev := func(rec string) exporters.Event {
		return exporters.Event{Evidence: exporters.Evidence{Origin: "proofline.test/log", LeafIndex: 41, TreeSize: 99, RecordID: "r-1"}, Record: []byte(rec)}
	}
	base := `"record_id":"r-1","ts_start":"2026-12-01T10:00:00.000000000Z","ts_end":"2026-12-01T10:00:00.120000000Z","actor":{"id":"agent-7","type":"agent","on_behalf_of":"alice@example.com"}`
	tests := []struct {
		name         string
		rec          string
		activity     int
		action, disp int
	}{
		{"allowed read-only call with trace", `{` + base + `,"tool":{"name":"search","server":"jira-mcp","version":"1.2","group":"ticketing"},"policy":{"decision":"allow"},"outcome":{"status":"ok"},"trace":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","parent_span_id":"00f067aa0ba902b6"},"attributes":{"mcp.tool.read_only":"true"},"mcp":{"method":"tools/call","request_id":"7","session_id":"s","transport":"http"}}`, 2, 1, 1},
		{"denied destructive call", `{` + base + `,"tool":{"name":"delete_ticket","server":"jira-mcp"},"policy":{"decision":"deny","rule":"no-deletes","reason":"agents may not delete"},"outcome":{"status":"policy_blocked","error_code":"-32080"},"attributes":{"mcp.tool.destructive":"true"}}`, 4, 2, 2},
		{"call under an approved elevation", `{` + base + `,"tool":{"name":"transfer_funds","server":"pay-mcp"},"policy":{"decision":"allow"},"outcome":{"status":"ok"},"scope_grants":["tickets:read"],"elevation":{"scopes":["payments:write"],"approver":"bob@example.com","reason":"INC-7","expires":"2026-12-01T11:00:00.000000000Z"}}`, 99, 1, 1},
		{"redacted call, no server, no annotations", `{"record_id":"r-1","ts_start":"2026-12-01T10:00:00Z","ts_end":"2026-12-01T10:00:01Z","actor":{"id":"svc","type":"service"},"tool":{"name":"send_email"},"policy":{"decision":"redact","rule":"mask"},"outcome":{"status":"system_error","error_message":"upstream 502"},"region":"eu","data_class":"pii"}`, 99, 99, 99},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := encode.OCSF(ev(tc.rec), "1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			if errs := ocsfErrors(t, s, out); len(errs) > 0 {
				t.Fatalf("the event does not validate:\n%s", strings.Join(errs, "\n"))
			}
			if out["activity_id"] != tc.activity || out["action_id"] != tc.action || out["disposition_id"] != tc.disp {
				t.Fatalf("activity %v action %v disposition %v", out["activity_id"], out["action_id"], out["disposition_id"])
			}
			pl := out["unmapped"].(map[string]any)["proofline"].(map[string]any)
			if pl["leaf_index"] != uint64(41) || pl["tree_size"] != uint64(99) || pl["log_origin"] != "proofline.test/log" {
				t.Fatalf("evidence: %v", pl)
			}
			if el, _ := pl["elevation"].(map[string]any); strings.Contains(tc.rec, `"elevation"`) != (el != nil) ||
				el != nil && (el["approver"] != "bob@example.com" || fmt.Sprint(el["scopes"]) != "[payments:write]" || el["reason"] != "INC-7" || el["expires"] != "2026-12-01T11:00:00Z") {
				t.Fatalf("elevation: %v", pl["elevation"])
			}
		})
	}
	a := encode.OCSFAnchor(&exporters.Anchor{Origin: "proofline.test/log", TreeSize: 99, RootHash: []byte{1, 2}, Note: []byte("proofline.test/log\n99\nAQI=\n\n— sig\n")}, "1.0.0")
	if errs := ocsfErrors(t, s, a); len(errs) > 0 {
		t.Fatalf("the checkpoint event does not validate:\n%s", strings.Join(errs, "\n"))
	}
}

// The validator itself must reject what the schema forbids, or the test
// above proves nothing.
func TestOCSFValidatorRejectsBrokenEvents(t *testing.T) {
	s := newSchema(t)
	good, err := encode.OCSF(exporters.Event{Evidence: exporters.Evidence{Origin: "o", LeafIndex: 1, TreeSize: 2, RecordID: "r"},
		Record: []byte(`{"record_id":"r","ts_start":"2026-12-01T10:00:00Z","ts_end":"2026-12-01T10:00:01Z","actor":{"id":"a","type":"agent"},"tool":{"name":"t","server":"s"},"policy":{"decision":"allow"},"outcome":{"status":"ok"}}`)}, "1")
	if err != nil {
		t.Fatal(err)
	}
	breaks := map[string]func(m map[string]any){
		"no api.operation":         func(m map[string]any) { delete(m["api"].(map[string]any), "operation") },
		"activity not in enum":     func(m map[string]any) { m["activity_id"] = 7 },
		"unknown attribute":        func(m map[string]any) { m["tool_name"] = "t" },
		"severity_id as string":    func(m map[string]any) { m["severity_id"] = "1" },
		"wrong type_uid":           func(m map[string]any) { m["type_uid"] = 600301 },
		"no metadata.product":      func(m map[string]any) { delete(m["metadata"].(map[string]any), "product") },
		"service without name/uid": func(m map[string]any) { m["api"].(map[string]any)["service"] = map[string]any{"version": "1"} },
	}
	for name, brk := range breaks {
		b, _ := json.Marshal(good)
		var m map[string]any
		json.Unmarshal(b, &m)
		brk(m)
		if errs := ocsfErrors(t, s, m); len(errs) == 0 {
			t.Errorf("%s: the validator accepted it", name)
		}
	}
}

// An OCSF lake: the file sink configured with `encoding: ocsf` writes lines
// that each validate against the schema, checkpoint lines included.
func TestOCSFFileSinkLinesValidate(t *testing.T) {
	s := newSchema(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "exporters.yaml")
	os.WriteFile(cfgPath, []byte("sinks:\n  - name: lake\n    type: file\n    file: {dir: "+dir+", encoding: ocsf}\n"), 0o600)
	f, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := f.Build()
	if err != nil {
		t.Fatal(err)
	}
	var events []exporters.Event
	for i := range 20 {
		id := fmt.Sprintf("r-%02d", i)
		decision := []string{"allow", "deny", "redact"}[i%3]
		rec := fmt.Sprintf(`{"record_id":%q,"ts_start":"2026-12-01T10:00:00Z","ts_end":"2026-12-01T10:00:00.5Z","actor":{"id":"a","type":"agent"},"tool":{"name":"t","server":"s"},"policy":{"decision":%q},"outcome":{"status":"ok"}}`, id, decision)
		events = append(events, exporters.Event{Evidence: exporters.Evidence{Origin: "o", LeafIndex: uint64(i), TreeSize: 20, RecordID: id}, Record: []byte(rec)})
	}
	anchor := &exporters.Anchor{Origin: "o", TreeSize: 20, RootHash: []byte{1}, Note: []byte("o\n20\nAQ==\n")}
	if err := specs[0].Sink.Send(context.Background(), exporters.Batch{Events: events, Anchor: anchor}); err != nil {
		t.Fatal(err)
	}
	if err := specs[0].Sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.zst"))
	if len(files) != 1 {
		t.Fatalf("files: %v", files)
	}
	raw, _ := os.ReadFile(files[0])
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(plain)), "\n")
	if len(lines) != 21 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if errs := ocsfErrors(t, s, m); len(errs) > 0 {
			t.Fatalf("line %d does not validate:\n%s", i, strings.Join(errs, "\n"))
		}
	}
}
