package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"

	"github.com/proofline/proofline/ingest/mcphook"
	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/schemas"
)

// nodeScript puts testdata/NAME in a fresh directory next to a
// node_modules link to the npm test tools, where Node's module resolution
// finds them.
func nodeScript(t *testing.T, prefix, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(prefix, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, src, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runTS runs a testdata script under Node (with env added to the
// environment) and decodes the one JSON value it prints into out.
func runTS(t *testing.T, node string, env []string, out any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the TypeScript client failed: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("the TypeScript client printed %q: %v\n%s", stdout.String(), err, stderr.String())
	}
}

// tsOutcome is what testdata/tsclient.mjs reports of one request.
type tsOutcome struct {
	Text    string   `json:"text"`
	IsError bool     `json:"isError"`
	Tools   []string `json:"tools"`
	Error   *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (o tsOutcome) String() string {
	if o.Error != nil {
		return fmt.Sprintf("error %d %q", o.Error.Code, o.Error.Message)
	}
	return fmt.Sprintf("text %q isError %v tools %v", o.Text, o.IsError, o.Tools)
}

// TestTypeScriptClientAgainstTheHook: an agent on the official TypeScript
// SDK, over stdio and streamable HTTP, against examples/tickets with the
// hook and examples/policy.yaml. listTools() (a tools/list without
// params), a call of a tool that does not exist, a denied call and a
// redacted call are each answered as the SDK's users expect, the server
// keeps answering, and every answered call's record is proven in the log.
func TestTypeScriptClientAgainstTheHook(t *testing.T) {
	e := newMCPEnv(t)
	prefix, node := testutil.NPMTools(t)
	script := nodeScript(t, prefix, "tsclient.mjs")
	bin, err := ticketsBinary()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--nats", e.natsURL, "--nats-token-file", e.natsTokenFile, "--policy", "../examples/policy.yaml", "--actor", "agent-7"}
	for _, transport := range []string{"stdio", "http"} {
		t.Run(transport, func(t *testing.T) {
			spool := filepath.Join(t.TempDir(), "spool")
			var srv *httpMCP
			var out map[string]tsOutcome
			switch transport {
			case "stdio":
				runTS(t, node, nil, &out, append([]string{script, "stdio", bin}, append(args, "--spool", spool)...)...)
			case "http":
				srv = startHTTPMCP(t, bin, append(args, "--spool", spool)...)
				runTS(t, node, nil, &out, script, "http", srv.url)
			}
			for _, k := range []string{"list", "again"} {
				if o := out[k]; o.Error != nil || !slices.Contains(o.Tools, "search_tickets") || !slices.Contains(o.Tools, "transfer_funds") {
					t.Errorf("listTools() (%s) answered %v", k, o)
				}
			}
			if o := out["search"]; o.Error != nil || o.IsError || !strings.Contains(o.Text, "#1 printer on fire") {
				t.Errorf("search answered %v", o)
			}
			if o := out["unknown"]; o.Error == nil || o.Error.Code != -32602 || !strings.Contains(o.Error.Message, "no_such_tool") {
				t.Errorf("a call of an unknown tool answered %v, want the SDK's -32602", o)
			}
			if o := out["denied"]; o.Error == nil || o.Error.Code != mcphook.CodePolicyDenied || !strings.Contains(o.Error.Message, "agents may not delete tickets") {
				t.Errorf("the denied call answered %v", o)
			}
			if o := out["redacted"]; o.Error != nil || o.Text != "sent 2 bytes to [REDACTED]" {
				t.Errorf("the redacted call answered %v", o)
			}
			if srv != nil {
				srv.alive(t)
			}
		})
	}
	// Six answered requests per transport, each recorded by tickets' hook.
	recs := e.provenWhere("", 12, 60*time.Second)
	got := map[string]int{}
	for _, r := range recs {
		raw, _ := json.Marshal(r.CallRecord)
		if strings.Contains(string(raw), "alice@example.com") {
			t.Errorf("a raw argument reached the log: %s", raw)
		}
		got[strings.Join([]string{r.MCP.Transport, r.MCP.Method, r.Tool.Name, r.Outcome.Status, r.Policy.Decision}, " ")]++
	}
	for _, tr := range []string{"stdio", "http"} {
		for k, n := range map[string]int{
			"tools/list tools/list ok allow":               2,
			"tools/call search_tickets ok allow":           1,
			"tools/call no_such_tool system_error allow":   1,
			"tools/call delete_ticket policy_blocked deny": 1,
			"tools/call send_email ok redact":              1,
		} {
			if got[tr+" "+k] != n {
				t.Errorf("%d proven records %q over %s, want %d (all: %v)", got[tr+" "+k], k, tr, n, got)
			}
		}
	}
}

// TestClientHookAgainstServerEverything: the hook's client side on a Go
// agent talking to npm @modelcontextprotocol/server-everything (the MCP
// project's reference server, in TypeScript) over stdio. The calls are
// answered as without the hook, the trace context it adds to _meta does
// not disturb the server, and each call's record — naming the server from
// its initialize answer — is proven in the log.
func TestClientHookAgainstServerEverything(t *testing.T) {
	e := newMCPEnv(t)
	prefix, node := testutil.NPMTools(t)
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-7", Version: "1"}, nil)
	client.AddSendingMiddleware(e.hook.ClientMiddleware(mcphook.Identity{ID: "agent-7", Type: schemas.ActorAgent}))
	cmd := exec.Command(node, filepath.Join(prefix, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js"), "stdio")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cs, err := client.Connect(ctxT(t, 30*time.Second), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect to server-everything: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() { _ = cs.Close() })
	server := cs.InitializeResult().ServerInfo

	ctx, plan := mcphook.StartPlan(context.Background(), e.tp, "everything")
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	if out, err := callText(t, ctx, cs, "echo", map[string]any{"message": "hello from Go"}, nil); err != nil || !strings.Contains(out, "hello from Go") {
		t.Fatalf("echo: %q %v", out, err)
	}
	if out, err := callText(t, ctx, cs, "get-sum", map[string]any{"a": 2, "b": 3}, nil); err != nil || !strings.Contains(out, "5") {
		t.Fatalf("get-sum: %q %v", out, err)
	}
	if _, err := callText(t, ctx, cs, "no_such_tool", map[string]any{}, nil); err == nil {
		t.Fatal("a call of an unknown tool succeeded")
	}
	plan.End()

	recs := e.proven(plan.SpanContext().TraceID().String(), 3, 60*time.Second)
	byTool := map[string]provenRecord{}
	for _, r := range recs {
		byTool[r.Tool.Name] = r
		if r.Attributes["proofline.hook"] != "client" || r.Actor.ID != "agent-7" || r.Tool.Server != server.Name || r.Tool.Version != server.Version {
			t.Errorf("record %+v %+v %v", r.Actor, r.Tool, r.Attributes)
		}
		if r.Trace == nil || r.Trace.ParentSpanID != plan.SpanContext().SpanID().String() {
			t.Errorf("record of %s is not under the plan span: %+v", r.Tool.Name, r.Trace)
		}
	}
	sum := sha256.Sum256([]byte(`{"message":"hello from Go"}`))
	if r := byTool["echo"]; r.Outcome.Status != schemas.StatusOK || r.ArgsSHA256 != hex.EncodeToString(sum[:]) || r.ResultSHA256 == "" {
		t.Errorf("echo record %+v args %s", r.Outcome, r.ArgsSHA256)
	}
	if r := byTool["get-sum"]; r.Outcome.Status != schemas.StatusOK {
		t.Errorf("get-sum record %+v", r.Outcome)
	}
	if r := byTool["no_such_tool"]; r.Outcome.Status == schemas.StatusOK {
		t.Errorf("unknown tool's record %+v", r.Outcome)
	}
}

// TestTypeScriptClientTripsABreaker: an agent on the official TypeScript
// SDK calls crm_lookup on examples/tickets (breakers after 3 failures, open
// for 1 s) while the CRM behind it goes down and comes back. The failing
// calls answer the tool's own error, the next one is refused with
// CodeCircuitOpen without reaching the CRM, other tools go on, and after
// the open time a probe closes the breaker. Every call's record is proven
// in the log, the refused one naming its breaker.
func TestTypeScriptClientTripsABreaker(t *testing.T) {
	e := newMCPEnv(t)
	prefix, node := testutil.NPMTools(t)
	script := nodeScript(t, prefix, "tsbreaker.mjs")
	bin, err := ticketsBinary()
	if err != nil {
		t.Fatal(err)
	}
	down := filepath.Join(t.TempDir(), "crm-down")
	var out struct {
		Before, Refused, Other, Probe, After tsOutcome
		Failing                              []tsOutcome
	}
	runTS(t, node, []string{"CRM_DOWN_FILE=" + down}, &out, script, bin, "--nats", e.natsURL, "--nats-token-file", e.natsTokenFile,
		"--actor", "agent-7", "--spool", filepath.Join(t.TempDir(), "spool"),
		"--breaker-failures", "3", "--breaker-open-for", "1s", "--crm-down-file", down)
	ok := func(what string, o tsOutcome, text string) {
		if o.Error != nil || o.IsError || !strings.Contains(o.Text, text) {
			t.Errorf("%s answered %v", what, o)
		}
	}
	ok("the call before the outage", out.Before, "customer acme")
	if len(out.Failing) != 3 {
		t.Fatalf("%d failing calls reported", len(out.Failing))
	}
	for i, o := range out.Failing {
		if o.Error == nil || o.Error.Code != -32603 || !strings.Contains(o.Error.Message, "crm unavailable") {
			t.Errorf("failing call %d answered %v", i, o)
		}
	}
	if o := out.Refused; o.Error == nil || o.Error.Code != mcphook.CodeCircuitOpen || !strings.Contains(o.Error.Message, "service:crm") {
		t.Errorf("the call after 3 failures answered %v, want CodeCircuitOpen", o)
	}
	ok("another tool while the breaker was open", out.Other, "printer on fire")
	ok("the probe", out.Probe, "customer acme")
	ok("the call after the probe", out.After, "customer acme")

	recs := e.provenWhere("tool=crm_lookup", 7, 60*time.Second)
	got := map[string]int{}
	for _, r := range recs {
		got[r.Outcome.Status+" "+r.Outcome.ErrorCode+" "+r.Attributes["proofline.breaker"]]++
	}
	want := map[string]int{"ok  ": 3, "system_error -32603 ": 3, "system_error -32086 service:crm": 1}
	if !maps.Equal(got, want) {
		t.Errorf("proven crm_lookup records %v, want %v", got, want)
	}
}

// TestTypeScriptClientElevation: calls from the official TypeScript SDK
// carry an elevation in _meta, as a gateway sets it, to examples/tickets
// (--elevation-from-meta, examples/policy.yaml; the agent's own scopes
// lack payments:write). The approved elevation lets the payment run; one
// without an approver, and none at all, are denied by their rules. Each
// record is proven in the log with the elevation it was made under, and
// the span store's elevated= filter finds the two elevated calls.
func TestTypeScriptClientElevation(t *testing.T) {
	e := newMCPEnv(t)
	prefix, node := testutil.NPMTools(t)
	script := nodeScript(t, prefix, "tselevation.mjs")
	bin, err := ticketsBinary()
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]tsOutcome
	runTS(t, node, nil, &out, script, bin, "--nats", e.natsURL, "--nats-token-file", e.natsTokenFile,
		"--policy", "../examples/policy.yaml", "--actor", "agent-7", "--scopes", "tickets:read",
		"--spool", filepath.Join(t.TempDir(), "spool"), "--elevation-from-meta")
	if o := out["approved"]; o.Error != nil || o.Text != "transferred 10.00 to acct-1" {
		t.Errorf("the approved elevated payment answered %v", o)
	}
	for k, rule := range map[string]string{"unapproved": "elevated-payments-need-an-approver", "none": "payments-need-scope"} {
		if o := out[k]; o.Error == nil || o.Error.Code != mcphook.CodePolicyDenied || !strings.Contains(o.Error.Message, rule) {
			t.Errorf("the %s payment answered %v, want a denial by %s", k, o, rule)
		}
	}
	recs := e.provenWhere("tool=transfer_funds", 3, 60*time.Second)
	got := map[string]string{}
	for _, r := range recs {
		el := "-"
		if r.Elevation != nil {
			el = strings.Join(r.Elevation.Scopes, ",") + " by " + r.Elevation.Approver + " for " + r.Elevation.Reason
			if r.Elevation.Expires == nil && r.Elevation.Approver != "" {
				t.Errorf("the approved elevation lost its expiry: %+v", r.Elevation)
			}
		}
		got[r.Policy.Decision+" "+r.Policy.Rule] = el
	}
	want := map[string]string{
		"allow ": "payments:write by bob@example.com for INC-7",
		"deny elevated-payments-need-an-approver": "payments:write by  for INC-7",
		"deny payments-need-scope":                "-",
	}
	if !maps.Equal(got, want) {
		t.Errorf("proven records %v, want %v", got, want)
	}
	if elevated := e.provenWhere("tool=transfer_funds&elevated=true", 2, 10*time.Second); len(elevated) != 2 {
		t.Errorf("elevated=true listed %d calls", len(elevated))
	}
}

// TestTypeScriptClientBudgetAcrossReplicas: two examples/tickets
// processes (replicas behind one gateway) share a monthly budget of five
// search_tickets calls through proofline's NATS. An agent on the official
// TypeScript SDK spends three on one replica; on the other, two more pass
// and the next is refused (CodeBudgetExceeded); a replica started
// afterwards refuses at once. Every call is proven in the log, the refused
// ones naming the budget.
func TestTypeScriptClientBudgetAcrossReplicas(t *testing.T) {
	e := newMCPEnv(t)
	prefix, node := testutil.NPMTools(t)
	script := nodeScript(t, prefix, "tsbudget.mjs")
	bin, err := ticketsBinary()
	if err != nil {
		t.Fatal(err)
	}
	replica := func() *httpMCP {
		return startHTTPMCP(t, bin, "--nats", e.natsURL, "--nats-token-file", e.natsTokenFile, "--actor", "agent-7",
			"--spool", filepath.Join(t.TempDir(), "spool"), "--search-budget", "5", "--budget-sync", "50ms")
	}
	calls := func(srv *httpMCP, n int) []tsOutcome {
		t.Helper()
		var out []tsOutcome
		if runTS(t, node, nil, &out, script, srv.url, fmt.Sprint(n)); len(out) != n {
			t.Fatalf("the TypeScript client answered %d calls, want %d", len(out), n)
		}
		return out
	}
	tok, err := os.ReadFile(e.natsTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := mcphook.OpenBudgetStore(ctxT(t, 10*time.Second), jetStreamAt(t, e.natsURL, nats.Token(strings.TrimSpace(string(tok)))))
	if err != nil {
		t.Fatal(err)
	}
	key := "budget.search-monthly." + time.Now().UTC().Format("2006-01") + ".all"
	stored := func() string {
		en, err := kv.Get(ctxT(t, 5*time.Second), key)
		if err != nil {
			return err.Error()
		}
		return string(en.Value())
	}
	summary := func(out []tsOutcome) string {
		var s []string
		for _, o := range out {
			switch {
			case o.Error != nil && o.Error.Code == mcphook.CodeBudgetExceeded && strings.Contains(o.Error.Message, "search-monthly"):
				s = append(s, "refused")
			case o.Error == nil && !o.IsError:
				s = append(s, "ok")
			default:
				s = append(s, o.String())
			}
		}
		return strings.Join(s, ",")
	}

	a, b := replica(), replica()
	if got := summary(calls(a, 3)); got != "ok,ok,ok" {
		t.Fatalf("replica a answered %s", got)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(stored(), `"calls":3`) }, "replica a's calls in the budget store")
	if got := summary(calls(b, 3)); got != "ok,ok,refused" {
		t.Fatalf("replica b answered %s, want two calls (5 − 3) then a refusal", got)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(stored(), `"calls":5`) }, "the spent budget in the store")
	if got := summary(calls(replica(), 1)); got != "refused" {
		t.Fatalf("a replica started afterwards answered %s", got)
	}

	recs := e.provenWhere("tool=search_tickets", 7, 60*time.Second)
	got := map[string]int{}
	for _, r := range recs {
		got[r.Outcome.Status+" "+r.Policy.Rule]++
	}
	if want := map[string]int{"ok ": 5, "policy_blocked budget:search-monthly": 2}; !maps.Equal(got, want) {
		t.Errorf("proven records %v, want %v", got, want)
	}
}
