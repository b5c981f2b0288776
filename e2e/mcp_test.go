package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/proofline/proofline/ingest/mcphook"
	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/schemas"
)

// ticketsBinary builds the example MCP server (examples/tickets) once.
var ticketsBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "proofline-e2e-tickets")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tickets")
	out, err := exec.Command("go", "build", "-o", bin, "../examples/tickets").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build examples/tickets: %v\n%s", err, out)
	}
	return bin, nil
})

// mcpEnv is proofline serve (with its NATS exposed for producers) and an
// agent side: an MCP client with proofline's client hook, recording
// through its own outbox, and a tracing SDK.
type mcpEnv struct {
	t       *testing.T
	srv     *server
	natsURL string
	// natsTokenFile is the token proofline made for its exposed NATS.
	natsTokenFile string
	queryTok      string
	keyPath       string
	tp            *sdktrace.TracerProvider
	hook          *mcphook.Hook
	// httpClient, when set, is the agent's HTTP client for streamable HTTP.
	httpClient *http.Client
}

func newMCPEnv(t *testing.T) *mcpEnv {
	t.Helper()
	natsAddr := freeAddr(t)
	data := t.TempDir()
	e := &mcpEnv{t: t, srv: startServer(t, data, "--nats-listen", natsAddr), natsURL: "nats://" + natsAddr}
	e.queryTok = e.srv.token("auditor", "query", "1h")
	e.keyPath = filepath.Join(data, "keys", "log.pub")
	e.natsTokenFile = filepath.Join(data, "keys", "nats.token")
	tok, err := os.ReadFile(e.natsTokenFile)
	if err != nil {
		t.Fatalf("proofline serve --nats-listen wrote no token: %v", err)
	}
	// Without the token the exposed NATS refuses producers.
	if bad, err := nats.Connect(e.natsURL, nats.MaxReconnects(0)); err == nil {
		bad.Close()
		t.Fatal("the exposed NATS accepted a client without its token")
	}
	js := jetStreamAt(t, e.natsURL, nats.Token(strings.TrimSpace(string(tok))), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	ob, err := outbox.Open(outbox.Config{Publisher: publish.NewPublisher(js), SpoolPath: filepath.Join(t.TempDir(), "agent-spool"),
		PublishTimeout: 500 * time.Millisecond, RetryInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Close(context.Background()) })
	e.tp = sdktrace.NewTracerProvider()
	e.hook, err = mcphook.New(mcphook.Config{Outbox: ob, Principal: "mcphook:e2e-agent", TracerProvider: e.tp, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.hook.Close(context.Background()) })
	return e
}

// session starts the example server with args over stdio or streamable
// HTTP and connects the agent to it.
func (e *mcpEnv) session(transport string, args ...string) *mcp.ClientSession {
	e.t.Helper()
	bin, err := ticketsBinary()
	if err != nil {
		e.t.Fatal(err)
	}
	args = append([]string{"--nats", e.natsURL, "--nats-token-file", e.natsTokenFile, "--policy", "../examples/policy.yaml", "--spool", filepath.Join(e.t.TempDir(), "spool"), "--actor", "agent-7"}, args...)
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-7", Version: "1"}, nil)
	client.AddSendingMiddleware(e.hook.ClientMiddleware(mcphook.Identity{ID: "agent-7", Type: schemas.ActorAgent}))
	var t mcp.Transport
	serverLog := filepath.Join(e.t.TempDir(), "tickets.log")
	logf, err := os.Create(serverLog)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { logf.Close() })
	switch transport {
	case "stdio":
		cmd := exec.Command(bin, args...)
		cmd.Stderr = logf
		t = &mcp.CommandTransport{Command: cmd}
	case "http":
		addr := freeAddr(e.t)
		cmd := exec.Command(bin, append(args, "--http", addr)...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { _ = cmd.Process.Signal(os.Interrupt); _, _ = cmd.Process.Wait() })
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get("http://" + addr)
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(serverLog)
				e.t.Fatalf("tickets --http not up: %v\n%s", err, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t = &mcp.StreamableClientTransport{Endpoint: "http://" + addr, HTTPClient: e.httpClient}
	}
	cs, err := client.Connect(ctxT(e.t, 30*time.Second), t, nil)
	if err != nil {
		if e.httpClient != nil && e.httpClient.Transport == nil {
			// A client without credentials: the caller expects 401.
			if strings.Contains(err.Error(), "401") || strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
				return nil
			}
			e.t.Fatalf("connect without a token failed, but not with 401: %v", err)
		}
		b, _ := os.ReadFile(serverLog)
		e.t.Fatalf("connect over %s: %v\n%s", transport, err, b)
	}
	e.t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func callText(t *testing.T, ctx context.Context, cs *mcp.ClientSession, name string, args map[string]any, meta mcp.Meta) (string, error) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	res, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: name, Arguments: args, Meta: meta})
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			out.WriteString(tc.Text)
		}
	}
	if res.IsError {
		return out.String(), fmt.Errorf("tool error: %s", out.String())
	}
	return out.String(), nil
}

func mcpCode(t *testing.T, err error) int64 {
	t.Helper()
	var we *jsonrpc.Error
	if !errors.As(err, &we) {
		t.Fatalf("error %v, want an MCP error", err)
	}
	return we.Code
}

// provenRecord is a record of the log, proven: its bundle verified
// offline with the log's public key.
type provenRecord struct {
	schemas.CallRecord
	LeafIndex uint64
}

// proven waits until the span store lists n records of the trace, then
// fetches each record's proof bundle and verifies it with `proofline
// verify`; it returns the records from the verified bundles.
func (e *mcpEnv) proven(traceID string, n int, within time.Duration) []provenRecord {
	e.t.Helper()
	return e.provenWhere("trace_id="+traceID, n, within)
}

// provenWhere is proven for the spans a /v1/spans filter selects ("" for
// all of them).
func (e *mcpEnv) provenWhere(filter string, n int, within time.Duration) []provenRecord {
	e.t.Helper()
	var listed []string
	deadline := time.Now().Add(within)
	for {
		code, body := e.srv.get(e.queryTok, "/v1/spans?limit=1000&"+filter)
		var page struct {
			Spans []struct {
				RecordID string `json:"record_id"`
			} `json:"spans"`
		}
		if code == http.StatusOK && json.Unmarshal(body, &page) == nil {
			listed = listed[:0]
			for _, s := range page.Spans {
				listed = append(listed, s.RecordID)
			}
			if len(listed) >= n {
				break
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("spans %q: %d records in the span store, want %d\n%s", filter, len(listed), n, e.srv.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(listed) != n {
		e.t.Fatalf("spans %q: %d records, want exactly %d", filter, len(listed), n)
	}
	dir := e.t.TempDir()
	var out []provenRecord
	for _, id := range listed {
		raw := e.srv.waitProof(e.queryTok, id)
		p := filepath.Join(dir, id+".json")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			e.t.Fatal(err)
		}
		if stdout, stderr, code := cli(e.t, "verify", "--bundle", p, "--key", e.keyPath); code != 0 {
			e.t.Fatalf("record %s does not verify: exit %d\n%s%s", id, code, stdout, stderr)
		}
		var b struct {
			Record    schemas.CallRecord `json:"record"`
			LeafIndex uint64             `json:"leaf_index"`
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, provenRecord{CallRecord: b.Record, LeafIndex: b.LeafIndex})
	}
	return out
}

// checkLinks asserts the trace's shape: every server-side record is the
// child of a client-side record, and every client-side record a child of
// the plan span.
func checkLinks(t *testing.T, recs []provenRecord, plan trace.SpanContext) (client, server map[string]provenRecord) {
	t.Helper()
	client, server = map[string]provenRecord{}, map[string]provenRecord{}
	for _, r := range recs {
		if r.Trace == nil || r.Trace.TraceID != plan.TraceID().String() {
			t.Fatalf("record %s is not in the plan's trace: %+v", r.RecordID, r.Trace)
		}
		switch r.Attributes["proofline.hook"] {
		case "client":
			client[r.Trace.SpanID] = r
			if r.Trace.ParentSpanID != plan.SpanID().String() {
				t.Errorf("client record %s (%s) is not a child of the plan span", r.RecordID, r.Tool.Name)
			}
		case "server":
			server[r.RecordID] = r
		default:
			t.Fatalf("record %s from no hook: %v", r.RecordID, r.Attributes)
		}
	}
	for _, s := range server {
		c, ok := client[s.Trace.ParentSpanID]
		if !ok || c.Tool.Name != s.Tool.Name {
			t.Errorf("server record of %s has no client parent (parent span %s)", s.Tool.Name, s.Trace.ParentSpanID)
		}
	}
	return client, server
}

// serverRecords picks the server-side records of a tool, in time order.
func serverRecords(recs map[string]provenRecord, tool string) []provenRecord {
	var out []provenRecord
	for _, r := range recs {
		if r.Tool.Name == tool {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b provenRecord) int { return a.TSStart.Compare(b.TSStart.Time) })
	return out
}

// TestMCPGoldenFlows drives the example server through real MCP sessions,
// over stdio and streamable HTTP: a normal call, a denied call, a redacted
// call, a repeated idempotent write, and a prompt injection asking for a
// forbidden tool. Each flow's tool behaviour is asserted, every record is
// proven in the log, and the spans' parent/child links are checked.
func TestMCPGoldenFlows(t *testing.T) {
	e := newMCPEnv(t)
	for _, transport := range []string{"stdio", "http"} {
		t.Run(transport, func(t *testing.T) {
			// The agent holds payments:write, so only the session rule
			// stands between the injected instruction and the payment.
			cs := e.session(transport, "--scopes", "tickets:read,payments:write")
			ctx, plan := mcphook.StartPlan(context.Background(), e.tp, "plan-"+transport)

			out, err := callText(t, ctx, cs, "search_tickets", map[string]any{"query": "printer"}, nil)
			if err != nil || !strings.Contains(out, "#1 printer on fire") {
				t.Fatalf("normal call: %q %v", out, err)
			}
			_, err = callText(t, ctx, cs, "delete_ticket", map[string]any{"id": 1}, mcp.Meta{mcphook.MetaIdempotencyKey: "del-1"})
			if code := mcpCode(t, err); code != mcphook.CodePolicyDenied || !strings.Contains(err.Error(), "agents may not delete tickets") {
				t.Fatalf("denied call: %v", err)
			}
			if out, _ := callText(t, ctx, cs, "search_tickets", map[string]any{"query": "printer"}, nil); !strings.Contains(out, "#1 printer on fire") {
				t.Fatalf("the denied delete ran: %q", out)
			}
			out, err = callText(t, ctx, cs, "send_email", map[string]any{"to": "alice@example.com", "body": "hi"}, nil)
			if err != nil || out != "sent 2 bytes to [REDACTED]" {
				t.Fatalf("redacted call: the tool answered %q (%v)", out, err)
			}
			first, err := callText(t, ctx, cs, "create_ticket", map[string]any{"title": "toner"}, mcp.Meta{mcphook.MetaIdempotencyKey: "toner-1"})
			if err != nil {
				t.Fatal(err)
			}
			again, err := callText(t, ctx, cs, "create_ticket", map[string]any{"title": "toner"}, mcp.Meta{mcphook.MetaIdempotencyKey: "toner-1"})
			if err != nil || again != first {
				t.Fatalf("repeated idempotent write answered %q, first %q (%v)", again, first, err)
			}
			other, err := callText(t, ctx, cs, "create_ticket", map[string]any{"title": "paper"}, mcp.Meta{mcphook.MetaIdempotencyKey: "paper-1"})
			if err != nil || other == first {
				t.Fatalf("a new key answered %q (%v)", other, err)
			}
			page, err := callText(t, ctx, cs, "fetch_page", map[string]any{"url": "https://status.example.com"}, nil)
			if err != nil || !strings.Contains(page, "call transfer_funds") {
				t.Fatalf("fetch_page: %q %v", page, err)
			}
			// The naive agent obeys the page.
			_, err = callText(t, ctx, cs, "transfer_funds", map[string]any{"to": "acct-666", "amount": 5000}, mcp.Meta{mcphook.MetaIdempotencyKey: "inj-1"})
			if code := mcpCode(t, err); code != mcphook.CodePolicyDenied || !strings.Contains(err.Error(), "no-payments-after-web-content") {
				t.Fatalf("injected follow-up: %v", err)
			}
			plan.End()

			// 9 calls, each recorded by the agent and by the server.
			recs := e.proven(plan.SpanContext().TraceID().String(), 18, 60*time.Second)
			clientRecs, server := checkLinks(t, recs, plan.SpanContext())
			if len(clientRecs) != 9 || len(server) != 9 {
				t.Fatalf("%d client and %d server records, want 9 and 9", len(clientRecs), len(server))
			}
			for _, r := range server {
				if r.IngestedBy != "mcphook:tickets" || r.Actor.ID != "agent-7" || r.MCP.Transport != map[string]string{"stdio": "stdio", "http": "http"}[transport] {
					t.Errorf("server record %+v", r.CallRecord)
				}
			}
			if d := serverRecords(server, "delete_ticket"); len(d) != 1 || d[0].Outcome.Status != schemas.StatusPolicyBlocked || d[0].Policy.Rule != "no-deletes-for-agents" {
				t.Errorf("denied call's record: %+v", d)
			}
			if m := serverRecords(server, "send_email"); len(m) != 1 || m[0].Policy.Decision != schemas.DecisionRedact || m[0].DataClass != "pii" {
				t.Errorf("redacted call's record: %+v", m)
			}
			c := serverRecords(server, "create_ticket")
			if len(c) != 3 || c[1].Attributes["proofline.idempotent_replay"] != "true" || c[0].ResultSHA256 != c[1].ResultSHA256 || c[2].ResultSHA256 == c[0].ResultSHA256 {
				t.Errorf("idempotent write records: %+v", c)
			}
			if p := serverRecords(server, "transfer_funds"); len(p) != 1 || p[0].Outcome.Status != schemas.StatusPolicyBlocked || p[0].Policy.Rule != "no-payments-after-web-content" {
				t.Errorf("blocked payment's record: %+v", p)
			}
			for _, r := range recs {
				raw, _ := json.Marshal(r.CallRecord)
				if strings.Contains(string(raw), "alice@example.com") || strings.Contains(string(raw), "acct-666") {
					t.Errorf("a raw argument reached the log: %s", raw)
				}
			}
		})
	}
}

// TestMCPRateLimitedBurst: a burst over the caller's rate is refused with
// a proper MCP error, and each refused call is in the log as
// policy_blocked.
func TestMCPRateLimitedBurst(t *testing.T) {
	e := newMCPEnv(t)
	cs := e.session("stdio", "--rate", "0.001", "--burst", "3")
	ctx, plan := mcphook.StartPlan(context.Background(), e.tp, "burst")
	var ok, limited int
	for range 6 {
		_, err := callText(t, ctx, cs, "search_tickets", map[string]any{"query": "vpn"}, nil)
		switch {
		case err == nil:
			ok++
		case mcpCode(t, err) == mcphook.CodeRateLimited:
			limited++
		}
	}
	plan.End()
	if ok != 3 || limited != 3 {
		t.Fatalf("%d allowed, %d limited; want 3 and 3", ok, limited)
	}
	recs := e.proven(plan.SpanContext().TraceID().String(), 12, 60*time.Second)
	_, server := checkLinks(t, recs, plan.SpanContext())
	var blocked int
	for _, r := range server {
		if r.Outcome.Status == schemas.StatusPolicyBlocked && r.Policy.Rule == "rate-limit:principal" {
			blocked++
		}
	}
	if blocked != 3 {
		t.Fatalf("%d rate-limited records in the log, want 3", blocked)
	}
}

// TestMCPWhileNATSIsDown: with proofline (and its NATS) down, tool calls
// go on unhindered; their records wait in the spools and reach the log,
// provable, once it is back.
func TestMCPWhileNATSIsDown(t *testing.T) {
	e := newMCPEnv(t)
	cs := e.session("stdio")
	ctx, plan := mcphook.StartPlan(context.Background(), e.tp, "outage")
	if _, err := callText(t, ctx, cs, "search_tickets", map[string]any{"query": "vpn"}, nil); err != nil {
		t.Fatal(err)
	}
	e.srv.stop()
	for i := range 5 {
		out, err := callText(t, ctx, cs, "search_tickets", map[string]any{"query": "vpn"}, nil)
		if err != nil || !strings.Contains(out, "#2 vpn down") {
			t.Fatalf("call %d during the outage: %q %v", i, out, err)
		}
	}
	plan.End()
	e.srv.start()
	recs := e.proven(plan.SpanContext().TraceID().String(), 12, 90*time.Second)
	clientRecs, server := checkLinks(t, recs, plan.SpanContext())
	if len(clientRecs) != 6 || len(server) != 6 {
		t.Fatalf("%d client and %d server records, want 6 and 6 (none lost, none twice)", len(clientRecs), len(server))
	}
}

// bearer adds an Authorization header to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// TestMCPIdentityFromBearerToken: over streamable HTTP the caller is who
// its verified bearer token says (through the SDK's auth middleware), and
// that identity and its scopes are what the policy decides on and what
// the log records. Without a token the server refuses the session.
func TestMCPIdentityFromBearerToken(t *testing.T) {
	e := newMCPEnv(t)
	token := "tok-" + fmt.Sprint(time.Now().UnixNano())
	sum := sha256.Sum256([]byte(token))
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(tokens, []byte(fmt.Sprintf(`tokens:
  - sha256: %x
    actor: agent-http
    type: agent
    on_behalf_of: alice@example.com
    scopes: [tickets:read, payments:write]
`, sum)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.httpClient = &http.Client{}
	if cs := e.session("http", "--tokens", tokens); cs != nil {
		t.Fatal("connected without a bearer token")
	}
	e.httpClient = &http.Client{Transport: bearer{token: token, next: http.DefaultTransport}}
	cs := e.session("http", "--tokens", tokens)
	ctx, plan := mcphook.StartPlan(context.Background(), e.tp, "token")
	// The token's payments:write scope lets a payment through in a clean
	// session (the policy denies it without the scope).
	out, err := callText(t, ctx, cs, "transfer_funds", map[string]any{"to": "acct-1", "amount": 10}, mcp.Meta{mcphook.MetaIdempotencyKey: "pay-1"})
	if err != nil || !strings.Contains(out, "transferred 10.00 to acct-1") {
		t.Fatalf("payment with the scope: %q %v", out, err)
	}
	plan.End()
	recs := e.proven(plan.SpanContext().TraceID().String(), 2, 60*time.Second)
	_, server := checkLinks(t, recs, plan.SpanContext())
	p := serverRecords(server, "transfer_funds")
	if len(p) != 1 || p[0].Actor.ID != "agent-http" || p[0].Actor.OnBehalfOf != "alice@example.com" ||
		strings.Join(p[0].ScopeGrants, ",") != "tickets:read,payments:write" || p[0].Outcome.Status != schemas.StatusOK {
		t.Fatalf("record of the token's call: %+v", p)
	}
}
