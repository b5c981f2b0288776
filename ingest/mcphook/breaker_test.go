package mcphook

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/schemas"
)

// breakerStates reads the breaker state gauge and the transitions
// counter from the hook's meter.
func breakerStates(t *testing.T, rd *sdkmetric.ManualReader) (state map[string]int64, entered map[string]int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	state, entered = map[string]int64{}, map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					k, _ := p.Attributes.Value("breaker")
					state[k.AsString()] = p.Value
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					k, _ := p.Attributes.Value("breaker")
					to, _ := p.Attributes.Value("to")
					entered[k.AsString()+" "+to.AsString()] += p.Value
				}
			}
		}
	}
	return state, entered
}

// TestCircuitBreaker: two tools of one downstream service share a
// breaker. Three system errors in a row open it; calls are then refused
// with CodeCircuitOpen without running the tool, and recorded so; other
// tools go on. After OpenFor one probe passes and, succeeding, closes it;
// a failing probe opens it again. Tool errors (isError results) do not
// count by default. States and transitions are in the hook's metrics.
func TestCircuitBreaker(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	h := newHarness(t, Config{
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd)),
		Tools:         map[string]ToolConfig{"crm_read": {Service: "crm"}, "crm_write": {Service: "crm"}},
		Limits:        Limits{Breaker: &BreakerConfig{ConsecutiveFailures: 3, OpenFor: 300 * time.Millisecond}},
	}, "")
	calls := 0
	code := func(name string, a args) int64 {
		t.Helper()
		calls++
		res, err := h.call(name, a, nil)
		if err != nil {
			return wireError(t, err).Code
		}
		if res.IsError {
			return 1 // a tool error, not a JSON-RPC one
		}
		return 0
	}

	// Tool errors are the caller's: they do not open the breaker.
	for range 5 {
		if got := code("search_tickets", args{"query": "fail"}); got != 1 {
			t.Fatalf("search_tickets(fail) answered %d, want a tool error", got)
		}
	}
	if got := code("search_tickets", args{"query": "x"}); got != 0 {
		t.Fatalf("search_tickets after tool errors answered %d", got)
	}

	if got := code("crm_read", nil); got != 0 {
		t.Fatalf("crm_read answered %d", got)
	}
	h.down.Store(true)
	for i := range 3 {
		if got := code("crm_read", nil); got != jsonrpc.CodeInternalError {
			t.Fatalf("failing call %d answered %d", i, got)
		}
	}
	ran := h.calls["crm_write"].Load()
	calls++
	res, err := h.call("crm_write", nil, nil)
	if err == nil {
		t.Fatalf("crm_write went through an open breaker: %+v", res)
	}
	if we := wireError(t, err); we.Code != CodeCircuitOpen || !strings.Contains(we.Message, "service:crm") {
		t.Fatalf("crm_write answered %d %q, want CodeCircuitOpen naming the breaker", we.Code, we.Message)
	}
	if h.calls["crm_write"].Load() != ran {
		t.Fatal("the tool ran while its breaker was open")
	}
	if got := code("search_tickets", args{"query": "x"}); got != 0 {
		t.Fatalf("another tool answered %d while crm's breaker was open", got)
	}
	if st, _ := breakerStates(t, rd); st["service:crm"] != breakerOpen || st["tool:search_tickets"] != breakerClosed {
		t.Fatalf("breaker states %v", st)
	}

	// The service recovers: after OpenFor a probe passes and closes it.
	h.down.Store(false)
	testutil.Eventually(t, 5*time.Second, func() bool { return code("crm_read", nil) == 0 }, "a probe through the half-open breaker")
	if got := code("crm_write", nil); got != 0 {
		t.Fatalf("crm_write after the breaker closed answered %d", got)
	}

	// A failing probe opens it again at once.
	h.down.Store(true)
	for range 3 {
		code("crm_read", nil)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return code("crm_read", nil) == jsonrpc.CodeInternalError }, "a probe that fails")
	if got := code("crm_read", nil); got != CodeCircuitOpen {
		t.Fatalf("after a failed probe the call answered %d, want CodeCircuitOpen", got)
	}
	st, entered := breakerStates(t, rd)
	if st["service:crm"] != breakerOpen || entered["service:crm open"] != 3 || entered["service:crm half-open"] != 2 || entered["service:crm closed"] != 1 {
		t.Fatalf("breaker states %v, transitions %v", st, entered)
	}

	// Every call is on record; the refused ones say why.
	var refused, failed int
	for _, r := range h.records(calls) {
		switch {
		case r.Outcome.ErrorCode == "-32086":
			refused++
			if r.Outcome.Status != schemas.StatusSystemError || r.Attributes["proofline.breaker"] != "service:crm" || r.Policy.Decision != schemas.DecisionAllow {
				t.Errorf("refused call's record %+v %v %+v", r.Outcome, r.Attributes, r.Policy)
			}
		case r.Outcome.Status == schemas.StatusSystemError:
			failed++
		}
	}
	if refused < 2 || failed != 7 {
		t.Errorf("%d records of refused calls and %d of failed ones, want ≥ 2 and 7", refused, failed)
	}
}

// TestBreakerCountsToolErrorsWhenAsked: a tool whose downstream failures
// come back as isError results opens its breaker when tool_error is
// among its Failures.
func TestBreakerCountsToolErrorsWhenAsked(t *testing.T) {
	h := newHarness(t, Config{Tools: map[string]ToolConfig{"search_tickets": {Breaker: &BreakerConfig{
		ConsecutiveFailures: 2, OpenFor: time.Hour, Failures: []string{schemas.StatusToolError}}}}}, "")
	for range 2 {
		if res, err := h.call("search_tickets", args{"query": "fail"}, nil); err != nil || !res.IsError {
			t.Fatalf("answered %v %+v", err, res)
		}
	}
	_, err := h.call("search_tickets", args{"query": "x"}, nil)
	if err == nil || wireError(t, err).Code != CodeCircuitOpen {
		t.Fatalf("third call answered %v, want CodeCircuitOpen", err)
	}
}

// configErrorCase is a configuration New must refuse, and a part of the
// error it must give.
type configErrorCase struct {
	name string
	cfg  Config
	want string
}

// checkConfigErrors runs New on each case against real JetStream.
func checkConfigErrors(t *testing.T, cases []configErrorCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(t)
			tc.cfg.Outbox = s.ob
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestBreakerConfigErrors: a configuration that cannot work is refused
// by New with what is wrong.
func TestBreakerConfigErrors(t *testing.T) {
	checkConfigErrors(t, []configErrorCase{
		{"rate above one", Config{Limits: Limits{Breaker: &BreakerConfig{FailureRate: 1.5}}}, "FailureRate"},
		{"unknown failure status", Config{Tools: map[string]ToolConfig{"a": {Breaker: &BreakerConfig{Failures: []string{"ok"}}}}}, `"ok" is not an outcome`},
		{"one service, two settings", Config{Tools: map[string]ToolConfig{
			"a": {Service: "crm", Breaker: &BreakerConfig{ConsecutiveFailures: 3}},
			"b": {Service: "crm", Breaker: &BreakerConfig{ConsecutiveFailures: 4}},
		}}, "service crm already has a breaker"},
	})
}
