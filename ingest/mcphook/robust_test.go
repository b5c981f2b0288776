package mcphook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/schemas"
)

// logBuffer is a slog destination the test reads back.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// stream is real JetStream behind an outbox, and what reached it.
type stream struct {
	t   *testing.T
	bus *bus.Bus
	ob  *outbox.Outbox
}

func newStream(t *testing.T) *stream {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Config{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ob, err := outbox.Open(outbox.Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: filepath.Join(t.TempDir(), "spool"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Close(context.Background()) })
	return &stream{t: t, bus: b, ob: ob}
}

// records waits until the stream holds n records and returns them.
func (s *stream) records(n int) []*schemas.CallRecord {
	s.t.Helper()
	h := &harness{t: s.t, bus: s.bus}
	return h.records(n)
}

func (s *stream) stored() []*schemas.CallRecord {
	s.t.Helper()
	h := &harness{t: s.t, bus: s.bus}
	return h.stored()
}

// brokenServer is an MCP server whose handlers fail in every way the
// SDK lets them: errors of their own, the SDK's errors, (nil, err) and
// panics, on each method the hook wraps.
func brokenServer() *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "broken", Version: "0.9.0"}, nil)
	ok := func(text string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "search_tickets"}, func(context.Context, *mcp.CallToolRequest, args) (*mcp.CallToolResult, any, error) {
		return ok("1 ticket"), nil, nil
	})
	schema := json.RawMessage(`{"type":"object"}`)
	srv.AddTool(&mcp.Tool{Name: "rpc_error", InputSchema: schema}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return nil, &jsonrpc.Error{Code: -32099, Message: "backend refused"}
	})
	srv.AddTool(&mcp.Tool{Name: "nil_err", InputSchema: schema}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return nil, errors.New("backend down")
	})
	for _, name := range []string{"panics", "panics_timed"} {
		srv.AddTool(&mcp.Tool{Name: name, InputSchema: schema}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			panic("tool bug: index out of range")
		})
	}
	srv.AddTool(&mcp.Tool{Name: "hook_panics", InputSchema: schema}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return ok("never"), nil
	})
	srv.AddResource(&mcp.Resource{URI: "res://ok", Name: "ok"}, func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, Text: "fine"}}}, nil
	})
	srv.AddResource(&mcp.Resource{URI: "res://nil-err", Name: "nil-err"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return nil, errors.New("disk gone")
	})
	srv.AddResource(&mcp.Resource{URI: "res://panics", Name: "panics"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		panic("resource bug")
	})
	srv.AddPrompt(&mcp.Prompt{Name: "greet"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}}, nil
	})
	srv.AddPrompt(&mcp.Prompt{Name: "nil-err"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return nil, errors.New("template missing")
	})
	srv.AddPrompt(&mcp.Prompt{Name: "panics"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		panic("prompt bug")
	})
	return srv
}

// rawClient speaks JSON-RPC to a server as clients the Go SDK did not
// write do: requests exactly as given, "params" absent when they omit it.
type rawClient struct {
	t    *testing.T
	conn mcp.Connection
	id   int
}

func newRawClient(t *testing.T, srv *mcp.Server) *rawClient {
	t.Helper()
	ctx := context.Background()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ss.Close() })
	conn, err := ct.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	rc := &rawClient{t: t, conn: conn}
	if _, werr := rc.call("initialize", `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw-client","version":"1"}}`); werr != nil {
		t.Fatalf("initialize: %v", werr)
	}
	if err := conn.Write(ctx, &jsonrpc.Request{Method: "notifications/initialized"}); err != nil {
		t.Fatal(err)
	}
	return rc
}

// call sends one request (params "" sends none) and waits for its
// answer: the result, or the JSON-RPC error.
func (rc *rawClient) call(method, params string) (json.RawMessage, *jsonrpc.Error) {
	rc.t.Helper()
	rc.id++
	id, _ := jsonrpc.MakeID(float64(rc.id))
	req := &jsonrpc.Request{ID: id, Method: method}
	if params != "" {
		req.Params = json.RawMessage(params)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rc.conn.Write(ctx, req); err != nil {
		rc.t.Fatalf("%s: write: %v (the server is gone)", method, err)
	}
	for {
		msg, err := rc.conn.Read(ctx)
		if err != nil {
			rc.t.Fatalf("%s: no answer: %v (the server is gone)", method, err)
		}
		resp, ok := msg.(*jsonrpc.Response)
		if !ok || resp.ID != id {
			continue // a notification or request of the server's
		}
		if resp.Error != nil {
			var we *jsonrpc.Error
			if !errors.As(resp.Error, &we) {
				rc.t.Fatalf("%s: error %v is not a JSON-RPC error", method, resp.Error)
			}
			return nil, we
		}
		return resp.Result, nil
	}
}

// TestHookNeverTakesItsServerDown: requests as the TypeScript SDK, the
// MCP Inspector and the conformance client send them, calls of tools that
// do not exist, handlers that fail in every way and handlers (and the
// hook's own callbacks) that panic, on every method the hook wraps. Each
// is answered — with the SDK's answer or a JSON-RPC internal error for a
// panic — the server keeps serving, each answered call's record reaches
// the stream with the outcome it had, and a panic is in the log with its
// stack.
func TestHookNeverTakesItsServerDown(t *testing.T) {
	st := newStream(t)
	logs := &logBuffer{}
	hook, err := New(Config{
		Outbox: st.ob, Logger: slog.New(slog.NewJSONHandler(logs, nil)), TracerProvider: noop.NewTracerProvider(),
		Server: ServerInfo{Name: "broken", Version: "0.9.0"},
		Tools:  map[string]ToolConfig{"panics_timed": {Timeout: 5 * time.Second}},
		Identify: func(ctx context.Context, req mcp.Request) Identity {
			if p, ok := req.GetParams().(*mcp.CallToolParamsRaw); ok && p != nil && p.Name == "hook_panics" {
				var m map[string]any
				_ = m["x"].(string) // a bug in a callback of the hook's
			}
			return DefaultIdentify(ctx, req)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hook.Close(context.Background()) })
	srv := brokenServer()
	srv.AddReceivingMiddleware(hook.ServerMiddleware())
	rc := newRawClient(t, srv)

	const result = 1 // wantCode of a call answered with a result
	cases := []struct {
		name, method, params string
		// wantCode is the JSON-RPC error code of the answer (the SDK's
		// own for a handler's error, internal error for a panic), or
		// result.
		wantCode int64
		// recTool and recStatus are the call's record's tool name and
		// outcome.
		recTool, recStatus string
	}{
		{"tools/list without params", "tools/list", "", result, "tools/list", schemas.StatusOK},
		{"tools/list with empty params", "tools/list", `{}`, result, "tools/list", schemas.StatusOK},
		{"tools/list with _meta", "tools/list", `{"_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}`, result, "tools/list", schemas.StatusOK},
		{"unknown tool", "tools/call", `{"name":"no_such_tool","arguments":{}}`, jsonrpc.CodeInvalidParams, "no_such_tool", schemas.StatusSystemError},
		{"handler returns *jsonrpc.Error", "tools/call", `{"name":"rpc_error","arguments":{}}`, -32099, "rpc_error", schemas.StatusSystemError},
		{"raw handler returns (nil, err)", "tools/call", `{"name":"nil_err","arguments":{}}`, 0, "nil_err", schemas.StatusSystemError},
		{"tool panics", "tools/call", `{"name":"panics","arguments":{}}`, jsonrpc.CodeInternalError, "panics", schemas.StatusSystemError},
		{"tool panics under a timeout", "tools/call", `{"name":"panics_timed","arguments":{}}`, jsonrpc.CodeInternalError, "panics_timed", schemas.StatusSystemError},
		{"the hook's Identify panics", "tools/call", `{"name":"hook_panics","arguments":{}}`, jsonrpc.CodeInternalError, "hook_panics", schemas.StatusSystemError},
		{"tools/call without arguments", "tools/call", `{"name":"search_tickets"}`, result, "search_tickets", schemas.StatusOK},
		{"resources/read", "resources/read", `{"uri":"res://ok"}`, result, "res://ok", schemas.StatusOK},
		{"resources/read of an unknown resource", "resources/read", `{"uri":"res://nope"}`, jsonrpc.CodeInvalidParams, "res://nope", schemas.StatusSystemError},
		{"resource handler returns (nil, err)", "resources/read", `{"uri":"res://nil-err"}`, 0, "res://nil-err", schemas.StatusSystemError},
		{"resource handler panics", "resources/read", `{"uri":"res://panics"}`, jsonrpc.CodeInternalError, "res://panics", schemas.StatusSystemError},
		{"prompts/get", "prompts/get", `{"name":"greet"}`, result, "greet", schemas.StatusOK},
		{"prompts/get of an unknown prompt", "prompts/get", `{"name":"nope"}`, jsonrpc.CodeInvalidParams, "nope", schemas.StatusSystemError},
		{"prompt handler returns (nil, err)", "prompts/get", `{"name":"nil-err"}`, 0, "nil-err", schemas.StatusSystemError},
		{"prompt handler panics", "prompts/get", `{"name":"panics"}`, jsonrpc.CodeInternalError, "panics", schemas.StatusSystemError},
	}
	total := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc.t = t
			res, werr := rc.call(tc.method, tc.params)
			switch {
			case tc.wantCode == result && werr != nil:
				t.Errorf("answered with error %d %q, want a result", werr.Code, werr.Message)
			case tc.wantCode != result && werr == nil:
				t.Errorf("answered %s, want error %d", res, tc.wantCode)
			case tc.wantCode != result && werr.Code != tc.wantCode:
				t.Errorf("answered error %d %q, want error %d", werr.Code, werr.Message, tc.wantCode)
			}
			// The server still serves.
			if _, werr := rc.call("tools/call", `{"name":"search_tickets","arguments":{"query":"x"}}`); werr != nil {
				t.Fatalf("the next call failed: %+v", werr)
			}
			// Both answered calls' records reach the stream, the case's
			// with its outcome.
			total += 2
			recs := st.records(total)
			var found bool
			for _, r := range recs[total-2:] {
				if r.MCP.Method == tc.method && r.Tool.Name == tc.recTool {
					found = true
					if r.Outcome.Status != tc.recStatus || r.Tool.Server != "broken" {
						t.Errorf("record %+v %+v, want status %s", r.Outcome, r.Tool, tc.recStatus)
					}
				}
			}
			if !found {
				t.Errorf("no record of %s %s among %s %s, %s %s", tc.method, tc.recTool, recs[total-2].MCP.Method, recs[total-2].Tool.Name, recs[total-1].MCP.Method, recs[total-1].Tool.Name)
			}
		})
	}
	// None twice.
	if got := len(st.stored()); got != total {
		t.Errorf("%d records in the stream, want %d", got, total)
	}
	logText := logs.String()
	for _, want := range []string{"tool bug: index out of range", "resource bug", "prompt bug", "interface conversion", "runtime/debug.Stack", "goroutine "} {
		if !strings.Contains(logText, want) {
			t.Errorf("the log lacks %q:\n%s", want, logText)
		}
	}
}
