package mcphook

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/proofline/proofline/schemas"
)

// panickyTracer panics when it starts a span whose name holds "explode":
// a bug in a component the hook calls on every call.
type panickyTracerProvider struct{ noop.TracerProvider }

func (panickyTracerProvider) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return panickyTracer{}
}

type panickyTracer struct{ noop.Tracer }

func (panickyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if strings.Contains(name, "explode") {
		panic("tracer bug: " + name)
	}
	return noop.Tracer{}.Start(ctx, name, opts...)
}

// TestClientHookNeverTakesItsAgentDown: the agent's side of the same
// failures. Calls the server answers with an error (an unknown tool, a
// handler's *jsonrpc.Error or plain error) are returned as they came and
// recorded; a panic in the hook or below it is answered with a JSON-RPC
// internal error and recorded; the agent's session keeps working.
func TestClientHookNeverTakesItsAgentDown(t *testing.T) {
	st := newStream(t)
	logs := &logBuffer{}
	hook, err := New(Config{Outbox: st.ob, Logger: slog.New(slog.NewJSONHandler(logs, nil)), TracerProvider: panickyTracerProvider{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hook.Close(context.Background()) })
	srv := brokenServer()
	mcp.AddTool(srv, &mcp.Tool{Name: "explode"}, func(context.Context, *mcp.CallToolRequest, args) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "never"}}}, nil, nil
	})
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-7"}, nil)
	// Below the hook (middleware added later wraps what was there): a
	// middleware with a bug.
	client.AddSendingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if p, ok := req.GetParams().(*mcp.CallToolParams); ok && p != nil && p.Name == "search_tickets" && p.Meta["crash"] == true {
				panic("middleware bug")
			}
			return next(ctx, method, req)
		}
	})
	client.AddSendingMiddleware(hook.ClientMiddleware(Identity{ID: "agent-7", Type: schemas.ActorAgent}))
	cs := connect(t, srv, client)
	ctx := context.Background()

	const result = 1
	total := 0
	for _, tc := range []struct {
		name     string
		call     func() error
		wantCode int64
		// recTool and recStatus describe the call's record; recTool ""
		// for a method the client hook does not record.
		recTool, recStatus string
	}{
		{"tools/list without params", func() error { _, err := cs.ListTools(ctx, nil); return err }, result, "", ""},
		{"unknown tool", func() error {
			_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "no_such_tool"})
			return err
		}, jsonrpc.CodeInvalidParams, "no_such_tool", schemas.StatusSystemError},
		{"handler returns *jsonrpc.Error", func() error {
			_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "rpc_error"})
			return err
		}, -32099, "rpc_error", schemas.StatusSystemError},
		{"raw handler returns (nil, err)", func() error {
			_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "nil_err"})
			return err
		}, 0, "nil_err", schemas.StatusSystemError},
		{"a middleware below the hook panics", func() error {
			_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "search_tickets", Meta: mcp.Meta{"crash": true}})
			return err
		}, jsonrpc.CodeInternalError, "search_tickets", schemas.StatusSystemError},
		{"the hook's tracer panics", func() error {
			_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "explode"})
			return err
		}, jsonrpc.CodeInternalError, "explode", schemas.StatusSystemError},
		{"resources/read", func() error {
			_, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "res://nil-err"})
			return err
		}, 0, "", ""},
		{"prompts/get", func() error { _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "nope"}); return err }, jsonrpc.CodeInvalidParams, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			switch {
			case tc.wantCode == result && err != nil:
				t.Errorf("error %v, want a result", err)
			case tc.wantCode != result && err == nil:
				t.Errorf("no error, want error %d", tc.wantCode)
			case tc.wantCode != result:
				if we := wireError(t, err); we.Code != tc.wantCode {
					t.Errorf("error %d %q, want %d", we.Code, we.Message, tc.wantCode)
				}
			}
			if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "search_tickets", Arguments: args{"query": "x"}}); err != nil {
				t.Fatalf("the next call failed: %v", err)
			}
			n := 1
			if tc.recTool != "" {
				n = 2
			}
			total += n
			recs := st.records(total)
			if tc.recTool == "" {
				return
			}
			var found bool
			for _, r := range recs[total-2:] {
				if r.Tool.Name == tc.recTool && r.Attributes["proofline.hook"] == "client" && (tc.recTool != "search_tickets" || r.Outcome.Status != schemas.StatusOK) {
					found = true
					if r.Outcome.Status != tc.recStatus || r.Tool.Server != "broken" || r.Tool.Version != "0.9.0" {
						t.Errorf("record %+v %+v, want status %s", r.Outcome, r.Tool, tc.recStatus)
					}
				}
			}
			if !found {
				t.Errorf("no record of %s among the last two", tc.recTool)
			}
		})
	}
	logText := logs.String()
	for _, want := range []string{"middleware bug", "tracer bug: tools/call explode", "goroutine "} {
		if !strings.Contains(logText, want) {
			t.Errorf("the log lacks %q:\n%s", want, logText)
		}
	}
}

// TestClientAndServerDigestArgumentsAlike: a call's records on both sides
// carry the same args_sha256, and a call without arguments (absent or
// JSON null) carries none on either side rather than a digest of "null".
func TestClientAndServerDigestArgumentsAlike(t *testing.T) {
	h := newHarness(t, Config{}, "")
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-8"}, nil)
	client.AddSendingMiddleware(h.hook.ClientMiddleware(Identity{ID: "agent-8", Type: schemas.ActorAgent}))
	srv := mcp.NewServer(&mcp.Implementation{Name: "tickets"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "search_tickets"}, func(context.Context, *mcp.CallToolRequest, args) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
	})
	srv.AddReceivingMiddleware(h.hook.ServerMiddleware())
	cs := connect(t, srv, client)
	for i, tc := range []struct {
		name   string
		args   any
		digest string // "" for none
	}{
		{"no arguments (the SDK sends {})", nil, digest([]byte(`{}`))},
		{"nil map (JSON null)", map[string]any(nil), ""},
		{"empty object", map[string]any{}, digest([]byte(`{}`))},
		{"arguments", map[string]any{"query": "x"}, digest([]byte(`{"query":"x"}`))},
	} {
		if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "search_tickets", Arguments: tc.args}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		recs := h.records(2 * (i + 1))
		for _, r := range recs[2*i:] {
			if r.ArgsSHA256 != tc.digest {
				t.Errorf("%s: %s record has args_sha256 %q, want %q", tc.name, r.Attributes["proofline.hook"], r.ArgsSHA256, tc.digest)
			}
		}
	}
}

// TestClientSidePolicySeesWhatTheServerSees: rules over tool.server,
// tool.version and session.tools fire in the agent's client hook as they
// do on the server and in `proofline policy test`: the server's name and
// version come from its initialize answer, the history from the calls
// the session made.
func TestClientSidePolicySeesWhatTheServerSees(t *testing.T) {
	h := newHarness(t, Config{}, `
version: 1
rules:
  - name: no-deletes-on-tickets-1.2
    when: tool.server == "tickets" && tool.version == "1.2.0" && tool.name == "delete_ticket"
    decision: deny
  - name: no-payments-after-web-content
    when: tool.name == "transfer_funds" && "fetch_page" in session.tools
    decision: deny
`)
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-9"}, nil)
	client.AddSendingMiddleware(h.hook.ClientMiddleware(Identity{ID: "agent-9", Type: schemas.ActorAgent}))
	srv := mcp.NewServer(&mcp.Implementation{Name: "tickets", Version: "1.2.0"}, nil)
	ran := map[string]int{}
	var mu sync.Mutex
	for _, name := range []string{"delete_ticket", "fetch_page", "transfer_funds"} {
		mcp.AddTool(srv, &mcp.Tool{Name: name}, func(context.Context, *mcp.CallToolRequest, args) (*mcp.CallToolResult, any, error) {
			mu.Lock()
			ran[name]++
			mu.Unlock()
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
		})
	}
	cs := connect(t, srv, client)
	// A second session of the same agent has its own history.
	other := connect(t, srv, client)
	ctx := context.Background()
	call := func(cs *mcp.ClientSession, name string) error {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args{}})
		return err
	}
	if we := wireError(t, call(cs, "delete_ticket")); we.Code != CodePolicyDenied || !strings.Contains(we.Message, "no-deletes-on-tickets-1.2") {
		t.Fatalf("delete: %+v", we)
	}
	if err := call(cs, "transfer_funds"); err != nil {
		t.Fatalf("payment in a clean session: %v", err)
	}
	if err := call(cs, "fetch_page"); err != nil {
		t.Fatal(err)
	}
	if we := wireError(t, call(cs, "transfer_funds")); we.Code != CodePolicyDenied || !strings.Contains(we.Message, "no-payments-after-web-content") {
		t.Fatalf("payment after a page: %+v", we)
	}
	if err := call(other, "transfer_funds"); err != nil {
		t.Fatalf("payment in the other, clean session: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if ran["delete_ticket"] != 0 || ran["transfer_funds"] != 2 {
		t.Fatalf("tools ran %v; the denied calls must not reach the server", ran)
	}
	recs := h.records(5)
	var denied int
	for _, r := range recs {
		if r.Tool.Server != "tickets" || r.Tool.Version != "1.2.0" {
			t.Errorf("client record names server %q %q", r.Tool.Server, r.Tool.Version)
		}
		if r.Outcome.Status == schemas.StatusPolicyBlocked {
			denied++
		}
	}
	if denied != 2 {
		t.Errorf("%d refusals recorded, want 2", denied)
	}
}
