// Package encode turns exported events into the formats SIEMs read: CEF
// (ArcSight Common Event Format, for syslog receivers such as Sentinel and
// QRadar), and the severity mapping every encoding shares. Each encoder
// keeps the evidence pointer (log origin, leaf index, tree size, record id)
// so an event found in a SIEM can be proven in the log.
package encode

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/schemas"
)

// Record decodes an event's leaf. Leaves are canonical call records the
// signer validated, so an error means a leaf from another log.
func Record(e exporters.Event) (*schemas.CallRecord, error) {
	var r schemas.CallRecord
	if err := json.Unmarshal(e.Record, &r); err != nil {
		return nil, fmt.Errorf("leaf %d is not a call record: %w", e.Evidence.LeafIndex, err)
	}
	return &r, nil
}

// Severity is how bad a call was, on syslog's scale (RFC 5424: 3 error,
// 4 warning, 5 notice, 6 informational).
func Severity(r *schemas.CallRecord) int {
	switch {
	case r.Outcome.Status == schemas.StatusSystemError || r.Outcome.Status == schemas.StatusTimeout:
		return 3
	case r.Policy.Decision == schemas.DecisionDeny || r.Outcome.Status == schemas.StatusPolicyBlocked:
		return 4
	case r.Outcome.Status == schemas.StatusToolError || r.Policy.Decision == schemas.DecisionRedact:
		return 5
	default:
		return 6
	}
}

// cefSeverity maps the syslog severity onto CEF's 0–10.
func cefSeverity(syslog int) int {
	switch syslog {
	case 3:
		return 6
	case 4:
		return 7
	case 5:
		return 5
	default:
		return 3
	}
}

// cefHeader escapes a CEF header field: backslash and pipe.
func cefHeader(s string) string {
	return strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\n", " ", "\r", " ").Replace(s)
}

// cefValue escapes a CEF extension value: backslash, equals sign, and line
// breaks as \n and \r.
func cefValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
}

type ext struct {
	b strings.Builder
}

func (x *ext) add(k, v string) {
	if v == "" {
		return
	}
	if x.b.Len() > 0 {
		x.b.WriteByte(' ')
	}
	x.b.WriteString(k)
	x.b.WriteByte('=')
	x.b.WriteString(cefValue(v))
}

func (x *ext) label(n, label, v string) {
	if v == "" {
		return
	}
	x.add(n+"Label", label)
	x.add(n, v)
}

// CEF encodes a call event as one CEF:0 line (no newline). version is the
// proofline version for the header.
func CEF(e exporters.Event, version string) (string, error) {
	r, err := Record(e)
	if err != nil {
		return "", err
	}
	sev := Severity(r)
	var x ext
	x.add("rt", strconv.FormatInt(r.TSEnd.UnixMilli(), 10))
	x.add("start", strconv.FormatInt(r.TSStart.UnixMilli(), 10))
	x.add("end", strconv.FormatInt(r.TSEnd.UnixMilli(), 10))
	x.add("externalId", r.RecordID)
	x.add("suser", r.Actor.ID)
	x.add("duser", r.Actor.OnBehalfOf)
	x.add("act", r.Policy.Decision)
	x.add("outcome", r.Outcome.Status)
	x.add("reason", r.Policy.Reason)
	x.add("msg", r.Outcome.ErrorMessage)
	x.add("destinationServiceName", r.Tool.Server)
	x.label("cs1", "tool", r.Tool.Name)
	x.label("cs2", "toolGroup", r.Tool.Group)
	x.label("cs3", "policyRule", r.Policy.Rule)
	if r.Trace != nil {
		x.label("cs4", "traceId", r.Trace.TraceID)
	}
	x.label("cs5", "logOrigin", e.Evidence.Origin)
	x.label("cs6", "errorCode", r.Outcome.ErrorCode)
	x.label("cn1", "leafIndex", strconv.FormatUint(e.Evidence.LeafIndex, 10))
	x.label("cn2", "treeSize", strconv.FormatUint(e.Evidence.TreeSize, 10))
	x.label("cn3", "latencyMs", strconv.FormatInt(r.Latency().Milliseconds(), 10))
	if el := r.Elevation; el != nil {
		// The cs fields are taken; CEF's flexString pair carries the
		// elevation (its reason is in the record, by the leaf index).
		x.label("flexString1", "elevationApprover", el.Approver)
		x.label("flexString2", "elevationScopes", strings.Join(el.Scopes, ","))
	}
	name := "tools/call " + r.Tool.Name
	if r.MCP != nil && r.MCP.Method != "" {
		name = r.MCP.Method + " " + r.Tool.Name
	}
	return fmt.Sprintf("CEF:0|proofline|proofline|%s|%s|%s|%d|%s", cefHeader(version), "tool_call",
		cefHeader(name), cefSeverity(sev), x.b.String()), nil
}

// CEFAnchor encodes a checkpoint event as one CEF:0 line.
func CEFAnchor(a *exporters.Anchor, version string) string {
	var x ext
	x.label("cs5", "logOrigin", a.Origin)
	x.label("cn2", "treeSize", strconv.FormatUint(a.TreeSize, 10))
	x.label("cs1", "rootHash", fmt.Sprintf("%x", a.RootHash))
	x.label("cs2", "checkpoint", string(a.Note))
	return fmt.Sprintf("CEF:0|proofline|proofline|%s|checkpoint|signed checkpoint|1|%s", cefHeader(version), x.b.String())
}
