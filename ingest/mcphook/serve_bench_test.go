package mcphook

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/proofline/proofline/ingest/mcphook/policy"
	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/bus"
)

// BenchmarkServeMiddleware is the hook's own work on a call's path, no
// transport and no tool: the middleware called directly, guardrails on
// as bench/mcphook has them (a policy, a breaker, a call budget and a
// per-caller cost budget, no tracing SDK installed). Its time is the window in
// which the scheduler and the garbage collector can delay a call, which
// is what bench/mcphook's p99 of the hook's own time measures.
func BenchmarkServeMiddleware(b *testing.B) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	bs, err := bus.Open(ctx, bus.Config{DataDir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	ob, err := outbox.Open(outbox.Config{Publisher: publish.NewPublisher(bs.JS), SpoolPath: filepath.Join(b.TempDir(), "spool"), QueueSize: 1 << 16, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer ob.Close(ctx)
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Config{Outbox: ob, Policy: pol, Server: ServerInfo{Name: "bench"}, Logger: quiet,
		Tools:  map[string]ToolConfig{"noop": {Group: "bench", Service: "bench-api", Cost: 0.001, Currency: "USD"}},
		Limits: Limits{Breaker: &BreakerConfig{ConsecutiveFailures: 5, FailureRate: 0.5}},
		Budgets: []Budget{
			{Name: "calls", Group: "bench", Period: PeriodDay, MaxCalls: 1 << 40},
			{Name: "cost", Tool: "noop", PerPrincipal: true, Period: PeriodMonth, MaxCost: 1e9, Currency: "USD"},
		}})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(ctx)
	srv := mcp.NewServer(&mcp.Implementation{Name: "bench"}, nil)
	st, _ := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer ss.Close()
	req := &mcp.ServerRequest[*mcp.CallToolParamsRaw]{Session: ss, Params: &mcp.CallToolParamsRaw{Name: "noop", Arguments: json.RawMessage(`{"query":"printer","limit":5}`)}}
	handler := h.ServerMiddleware()(func(context.Context, string, mcp.Request) (mcp.Result, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := handler(ctx, "tools/call", req); err != nil {
			b.Fatal(err)
		}
	}
}
