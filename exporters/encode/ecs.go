package encode

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/schemas"
)

// ECSVersion is the Elastic Common Schema release whose field names and
// categorization values the documents use (checked against that release's
// generated/ecs/ecs_flat.yml; event.category `api` exists since 9.0, the
// gen_ai.tool.* fields since 9.1, where they are still beta).
const ECSVersion = "9.4.0"

// ECS event.dataset values: calls and checkpoints are different kinds of
// document, and a data stream's dataset should match event.dataset, so
// they are meant for different indices.
const (
	ECSDatasetCalls       = "proofline.calls"
	ECSDatasetCheckpoints = "proofline.checkpoints"
)

// ecsOperation is the OpenTelemetry GenAI semantic conventions' operation
// name for a tool execution, which ECS adopted as gen_ai.operation.name
// (the collector exporter keys tool-call spans on the same value).
const ecsOperation = "execute_tool"

// ECSID is the document id of a call: the leaf's place in its log. Indexing
// with `create` under this id makes a redelivered leaf a version conflict
// instead of a second document.
func ECSID(ev exporters.Evidence) string {
	return ev.Origin + ":" + strconv.FormatUint(ev.LeafIndex, 10)
}

// ECSAnchorID is the document id of a checkpoint: one per log and size.
func ECSAnchorID(a *exporters.Anchor) string {
	return a.Origin + ":checkpoint:" + strconv.FormatUint(a.TreeSize, 10)
}

// ecsTypes maps a call to ECS event.type values of category `api`: the
// policy's verdict (allowed/denied) and, when the tool's MCP annotations
// say what it does, access (read-only), deletion (destructive) or change.
// Without annotations proofline does not guess.
func ecsTypes(r *schemas.CallRecord) []string {
	types := []string{"allowed"}
	if r.Policy.Decision == schemas.DecisionDeny || r.Outcome.Status == schemas.StatusPolicyBlocked {
		types = []string{"denied"}
	}
	switch {
	case r.Attributes[AttrReadOnly] == "true":
		types = append(types, "access")
	case r.Attributes[AttrDestructive] == "true":
		types = append(types, "deletion")
	case r.Attributes[AttrReadOnly] == "false":
		types = append(types, "change")
	}
	return types
}

// ecsOutcome is event.outcome from the tool call's point of view: only an
// ok call succeeded; a status proofline does not know is `unknown`.
func ecsOutcome(status string) string {
	switch status {
	case schemas.StatusOK:
		return "success"
	case schemas.StatusToolError, schemas.StatusSystemError, schemas.StatusTimeout, schemas.StatusPolicyBlocked:
		return "failure"
	default:
		return "unknown"
	}
}

// ECS encodes a call event as an Elastic Common Schema document.
//
// The record's canonical bytes go to event.original (ECS keeps it stored,
// not indexed) and their RFC 6962 leaf hash to event.hash, so the document
// itself holds what an inclusion proof for proofline.leaf_index checks.
// The evidence pointer and the digests are under proofline.*, the only
// custom object; everything else uses ECS field names.
func ECS(e exporters.Event, version string) (map[string]any, error) {
	r, err := Record(e)
	if err != nil {
		return nil, err
	}
	method := "tools/call"
	if r.MCP != nil && r.MCP.Method != "" {
		method = r.MCP.Method
	}
	leafHash := rfc6962.DefaultHasher.HashLeaf(e.Record)
	event := map[string]any{
		"kind":     "event",
		"category": []string{"api"},
		"type":     ecsTypes(r),
		"outcome":  ecsOutcome(r.Outcome.Status),
		"action":   method,
		"id":       r.RecordID,
		"dataset":  ECSDatasetCalls,
		"module":   "proofline",
		"start":    r.TSStart.UTC().Format(time.RFC3339Nano),
		"end":      r.TSEnd.UTC().Format(time.RFC3339Nano),
		"duration": r.Latency().Nanoseconds(),
		"sequence": e.Evidence.LeafIndex,
		"severity": Severity(r),
		"original": string(e.Record),
		"hash":     hex.EncodeToString(leafHash),
	}
	setIf(event, "reason", r.Policy.Reason)
	doc := map[string]any{
		"@timestamp": r.TSStart.UTC().Format(time.RFC3339Nano),
		"ecs":        map[string]any{"version": ECSVersion},
		"message":    fmt.Sprintf("%s %s by %s: %s, %s", method, r.Tool.Name, r.Actor.ID, r.Policy.Decision, r.Outcome.Status),
		"event":      event,
		"observer":   map[string]any{"vendor": "proofline", "product": "proofline", "version": version},
	}
	// user: the actor; user.effective is ECS's "user whose privileges were
	// assumed" — the principal an agent acts on behalf of.
	user := map[string]any{"id": r.Actor.ID, "name": r.Actor.ID}
	related := []string{r.Actor.ID}
	if r.Actor.OnBehalfOf != "" {
		user["effective"] = map[string]any{"id": r.Actor.OnBehalfOf, "name": r.Actor.OnBehalfOf}
		related = append(related, r.Actor.OnBehalfOf)
	}
	doc["user"] = user
	doc["related"] = map[string]any{"user": related}
	// service: the MCP server that provides the tool.
	if r.Tool.Server != "" || r.Tool.Version != "" {
		svc := map[string]any{"type": "mcp"}
		setIf(svc, "name", r.Tool.Server)
		setIf(svc, "version", r.Tool.Version)
		doc["service"] = svc
	}
	gen := map[string]any{
		"operation": map[string]any{"name": ecsOperation},
		"tool":      map[string]any{"name": r.Tool.Name},
	}
	if r.MCP != nil && r.MCP.RequestID != "" {
		gen["tool"].(map[string]any)["call"] = map[string]any{"id": r.MCP.RequestID}
	}
	if r.Actor.Type == schemas.ActorAgent {
		gen["agent"] = map[string]any{"id": r.Actor.ID}
	}
	doc["gen_ai"] = gen
	if r.Trace != nil {
		doc["trace"] = map[string]any{"id": r.Trace.TraceID}
		doc["span"] = map[string]any{"id": r.Trace.SpanID}
	}
	if r.Policy.Rule != "" {
		rule := map[string]any{"name": r.Policy.Rule}
		setIf(rule, "description", r.Policy.Reason)
		doc["rule"] = rule
	}
	if r.Outcome.ErrorCode != "" || r.Outcome.ErrorMessage != "" {
		er := map[string]any{}
		setIf(er, "code", r.Outcome.ErrorCode)
		setIf(er, "message", r.Outcome.ErrorMessage)
		doc["error"] = er
	}
	labels := map[string]any{}
	setIf(labels, "region", r.Region)
	setIf(labels, "data_class", r.DataClass)
	setIf(labels, "tool_group", r.Tool.Group)
	if len(labels) > 0 {
		doc["labels"] = labels
	}
	pl := map[string]any{
		"log_origin": e.Evidence.Origin, "leaf_index": e.Evidence.LeafIndex, "tree_size": e.Evidence.TreeSize,
		"record_id": r.RecordID, "leaf_hash": hex.EncodeToString(leafHash),
		"decision": r.Policy.Decision, "status": r.Outcome.Status, "actor_type": r.Actor.Type,
	}
	setIf(pl, "args_sha256", r.ArgsSHA256)
	setIf(pl, "result_sha256", r.ResultSHA256)
	setIf(pl, "workflow_id", r.WorkflowID)
	setIf(pl, "plan_id", r.PlanID)
	setIf(pl, "ingested_by", r.IngestedBy)
	if r.Trace != nil {
		setIf(pl, "parent_span_id", r.Trace.ParentSpanID)
	}
	if r.MCP != nil {
		setIf(pl, "mcp_session_id", r.MCP.SessionID)
		setIf(pl, "mcp_transport", r.MCP.Transport)
	}
	if len(r.ScopeGrants) > 0 {
		pl["scope_grants"] = r.ScopeGrants
	}
	if el := elevation(r); el != nil {
		pl["elevation"] = el
	}
	doc["proofline"] = pl
	return doc, nil
}

// ECSAnchor is a checkpoint as an ECS document: event.kind `state` (the
// log's state at a point, not something that happened), action
// `checkpoint`, the signed note in event.original and proofline.checkpoint.
func ECSAnchor(a *exporters.Anchor, version string) map[string]any {
	return map[string]any{
		"@timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"ecs":        map[string]any{"version": ECSVersion},
		"message":    fmt.Sprintf("signed checkpoint of %s at tree size %d", a.Origin, a.TreeSize),
		"event": map[string]any{
			"kind": "state", "category": []string{"database"}, "type": []string{"info"}, "outcome": "success",
			"action": "checkpoint", "id": ECSAnchorID(a), "dataset": ECSDatasetCheckpoints, "module": "proofline",
			"original": string(a.Note),
		},
		"observer": map[string]any{"vendor": "proofline", "product": "proofline", "version": version},
		"proofline": map[string]any{"log_origin": a.Origin, "tree_size": a.TreeSize,
			"root_hash": hex.EncodeToString(a.RootHash), "checkpoint": string(a.Note)},
	}
}
