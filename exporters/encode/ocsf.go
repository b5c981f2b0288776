package encode

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/schemas"
)

// OCSFVersion is the OCSF schema version the events follow (the snapshot
// the tests validate against).
const OCSFVersion = "1.9.0-dev"

// OCSF API Activity (class 6003, category 6 Application Activity).
const (
	ocsfCategory = 6
	ocsfClass    = 6003
)

// OCSF activity ids of API Activity.
const (
	ActivityCreate = 1
	ActivityRead   = 2
	ActivityUpdate = 3
	ActivityDelete = 4
	ActivityOther  = 99
)

// Attributes a record may carry (set by the MCP hook from the tool's MCP
// annotations) that decide the OCSF activity.
const (
	AttrReadOnly    = "mcp.tool.read_only"
	AttrDestructive = "mcp.tool.destructive"
)

// activity maps a call to API Activity's activity_id: a tool annotated
// read-only reads, one annotated destructive deletes; without annotations
// proofline cannot know what a tool does, so it says Other.
func activity(r *schemas.CallRecord) (int, string) {
	switch {
	case r.Attributes[AttrReadOnly] == "true":
		return ActivityRead, "Read"
	case r.Attributes[AttrDestructive] == "true":
		return ActivityDelete, "Delete"
	case r.Attributes[AttrReadOnly] == "false":
		return ActivityUpdate, "Update"
	default:
		return ActivityOther, "Other"
	}
}

// ocsfSeverity maps the syslog severity onto OCSF's severity_id.
func ocsfSeverity(syslog int) (int, string) {
	switch syslog {
	case 3:
		return 4, "High"
	case 4:
		return 3, "Medium"
	case 5:
		return 2, "Low"
	default:
		return 1, "Informational"
	}
}

// OCSF encodes a call event as an OCSF API Activity event, with the
// security_control profile (the policy decision) and the trace profile (W3C
// ids); the evidence pointer is in unmapped.proofline and metadata (uid is
// the record id, sequence the leaf index, log_name the log origin).
func OCSF(e exporters.Event, version string) (map[string]any, error) {
	r, err := Record(e)
	if err != nil {
		return nil, err
	}
	actID, actName := activity(r)
	sevID, sevName := ocsfSeverity(Severity(r))
	statusID, statusName := 1, "Success"
	if r.Outcome.Status != schemas.StatusOK {
		statusID, statusName = 2, "Failure"
	}
	method := "tools/call"
	if r.MCP != nil && r.MCP.Method != "" {
		method = r.MCP.Method
	}
	profiles := []any{"security_control"}
	ev := map[string]any{
		"category_uid":  ocsfCategory,
		"category_name": "Application Activity",
		"class_uid":     ocsfClass,
		"class_name":    "API Activity",
		"activity_id":   actID,
		"activity_name": actName,
		"type_uid":      ocsfClass*100 + actID,
		"type_name":     "API Activity: " + actName,
		"time":          r.TSStart.UnixMilli(),
		"start_time":    r.TSStart.UnixMilli(),
		"end_time":      r.TSEnd.UnixMilli(),
		"duration":      r.Latency().Milliseconds(),
		"severity_id":   sevID,
		"severity":      sevName,
		"status_id":     statusID,
		"status":        statusName,
		"message":       fmt.Sprintf("%s %s by %s: %s, %s", method, r.Tool.Name, r.Actor.ID, r.Policy.Decision, r.Outcome.Status),
		"metadata": map[string]any{
			"product":  map[string]any{"name": "proofline", "vendor_name": "proofline", "version": version},
			"version":  OCSFVersion,
			"uid":      r.RecordID,
			"sequence": e.Evidence.LeafIndex,
			"log_name": e.Evidence.Origin,
			"profiles": &profiles,
		},
		"actor": map[string]any{"user": user(r.Actor)},
		"api": map[string]any{
			"operation": method,
			"service":   entity(map[string]any{"name": r.Tool.Server, "version": r.Tool.Version}, r.Tool.Name),
			"request":   map[string]any{"uid": requestUID(r)},
		},
		"src_endpoint": map[string]any{"name": r.Actor.ID},
		"dst_endpoint": entity(map[string]any{"name": r.Tool.Server, "svc_name": r.Tool.Name}, r.Tool.Name),
		"resources":    []any{resource(r)},
		"unmapped": map[string]any{"proofline": map[string]any{
			"log_origin": e.Evidence.Origin, "leaf_index": e.Evidence.LeafIndex, "tree_size": e.Evidence.TreeSize,
			"record_id": r.RecordID, "outcome": r.Outcome.Status, "on_behalf_of": r.Actor.OnBehalfOf,
			"args_sha256": r.ArgsSHA256, "result_sha256": r.ResultSHA256, "workflow_id": r.WorkflowID, "plan_id": r.PlanID,
		}},
	}
	if el := elevation(r); el != nil {
		// OCSF has no object for a grant beyond the actor's standing
		// scopes with its approver: it goes with the evidence.
		ev["unmapped"].(map[string]any)["proofline"].(map[string]any)["elevation"] = el
	}
	// status_code is the source's own code (the MCP error code, else the
	// outcome); status_detail says why (error message, else policy reason).
	ev["status_code"] = r.Outcome.Status
	setIf(ev, "status_code", r.Outcome.ErrorCode)
	ev["status_detail"] = ev["message"]
	setIf(ev, "status_detail", r.Policy.Reason)
	setIf(ev, "status_detail", r.Outcome.ErrorMessage)
	if r.Outcome.ErrorCode != "" || r.Outcome.ErrorMessage != "" {
		resp := map[string]any{}
		setIf(resp, "error", r.Outcome.ErrorCode)
		setIf(resp, "error_message", r.Outcome.ErrorMessage)
		setIf(resp, "message", r.Outcome.ErrorMessage)
		ev["api"].(map[string]any)["response"] = resp
	}
	if r.Tool.Group != "" {
		ev["api"].(map[string]any)["group"] = map[string]any{"name": r.Tool.Group}
	}
	// security_control: what the policy decided.
	switch r.Policy.Decision {
	case schemas.DecisionDeny:
		ev["action_id"], ev["action"] = 2, "Denied"
		ev["disposition_id"], ev["disposition"] = 2, "Blocked"
		ev["is_alert"] = true
	case schemas.DecisionRedact:
		ev["action_id"], ev["action"] = 99, "Redacted"
		ev["disposition_id"], ev["disposition"] = 99, "Redacted"
		ev["is_alert"] = false
	default:
		ev["action_id"], ev["action"] = 1, "Allowed"
		ev["disposition_id"], ev["disposition"] = 1, "Allowed"
		ev["is_alert"] = false
	}
	if r.Policy.Rule != "" || r.Policy.Reason != "" {
		pol := map[string]any{"name": r.Policy.Rule, "is_applied": true}
		if r.Policy.Rule == "" {
			pol["name"] = "default"
		}
		setIf(pol, "desc", r.Policy.Reason)
		ev["policy"] = pol
	}
	// trace profile: the W3C ids.
	if r.Trace != nil {
		span := map[string]any{"uid": r.Trace.SpanID, "start_time": r.TSStart.UnixMilli(), "end_time": r.TSEnd.UnixMilli(),
			"duration": r.Latency().Milliseconds(), "operation": method}
		setIf(span, "parent_uid", r.Trace.ParentSpanID)
		ev["trace"] = map[string]any{"uid": r.Trace.TraceID, "span": span}
		profiles = append(profiles, "trace")
	}
	return ev, nil
}

// OCSFJSON is OCSF as one JSON line.
func OCSFJSON(e exporters.Event, version string) ([]byte, error) {
	ev, err := OCSF(e, version)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ev)
}

func user(a schemas.Actor) map[string]any {
	u := map[string]any{"uid": a.ID, "name": a.ID}
	switch a.Type {
	case schemas.ActorUser:
		u["type_id"], u["type"] = 1, "User"
	case schemas.ActorService:
		u["type_id"], u["type"] = 4, "Service"
	default:
		u["type_id"], u["type"] = 99, a.Type
	}
	return u
}

func requestUID(r *schemas.CallRecord) string {
	if r.MCP != nil && r.MCP.RequestID != "" {
		return r.MCP.RequestID
	}
	return r.RecordID
}

func resource(r *schemas.CallRecord) map[string]any {
	res := map[string]any{"name": r.Tool.Name, "type": "mcp_tool"}
	setIf(res, "version", r.Tool.Version)
	if r.Tool.Group != "" {
		res["group"] = map[string]any{"name": r.Tool.Group}
	}
	setIf(res, "region", r.Region)
	if r.DataClass != "" {
		res["labels"] = []any{"data_class:" + r.DataClass}
	}
	return res
}

// entity drops empty fields and falls back to name when the object would
// otherwise lack both name and uid (OCSF's at_least_one constraint).
func entity(m map[string]any, fallback string) map[string]any {
	for k, v := range m {
		if s, ok := v.(string); ok && s == "" {
			delete(m, k)
		}
	}
	if _, ok := m["name"]; !ok {
		if _, ok := m["uid"]; !ok {
			m["name"] = fallback
		}
	}
	return m
}

// elevation is a record's elevation as the JSON encodings carry it; nil
// without one.
func elevation(r *schemas.CallRecord) map[string]any {
	e := r.Elevation
	if e == nil {
		return nil
	}
	m := map[string]any{"scopes": e.Scopes}
	setIf(m, "approver", e.Approver)
	setIf(m, "reason", e.Reason)
	if e.Expires != nil {
		m["expires"] = e.Expires.UTC().Format(time.RFC3339Nano)
	}
	return m
}

func setIf(m map[string]any, k, v string) {
	if v != "" {
		m[k] = v
	}
}

// OCSFAnchor is a checkpoint as an OCSF event of the same class (activity
// Other), so a lake holding OCSF events also holds their anchors.
func OCSFAnchor(a *exporters.Anchor, version string) map[string]any {
	return map[string]any{
		"category_uid": ocsfCategory, "class_uid": ocsfClass, "activity_id": ActivityOther, "type_uid": ocsfClass*100 + ActivityOther,
		"activity_name": "Other", "class_name": "API Activity", "category_name": "Application Activity", "type_name": "API Activity: Other",
		"time": time.Now().UnixMilli(), "severity_id": 1, "severity": "Informational", "status_id": 1, "status": "Success",
		"message": fmt.Sprintf("signed checkpoint of %s at tree size %d", a.Origin, a.TreeSize),
		"metadata": map[string]any{"product": map[string]any{"name": "proofline", "vendor_name": "proofline", "version": version},
			"version": OCSFVersion, "log_name": a.Origin, "event_code": "checkpoint"},
		"status_code": "ok", "status_detail": "checkpoint signed by the log",
		"actor":        map[string]any{"app_name": "proofline"},
		"api":          map[string]any{"operation": "checkpoint"},
		"src_endpoint": map[string]any{"name": a.Origin},
		"dst_endpoint": map[string]any{"name": a.Origin},
		"resources":    []any{map[string]any{"name": a.Origin, "type": "merkle_log"}},
		"unmapped": map[string]any{"proofline": map[string]any{"log_origin": a.Origin, "tree_size": a.TreeSize,
			"root_hash": fmt.Sprintf("%x", a.RootHash), "checkpoint": string(a.Note)}},
	}
}
