// Package api assembles proofline's HTTP surface: ingest, the log's read
// API (C2SP tlog-tiles plus proof bundles), health and readiness. Each role
// brings its handler; this package only routes and applies auth.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/proofline/proofline/internal/auth"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/health"
	"github.com/proofline/proofline/internal/httpx"
	"github.com/proofline/proofline/ledger"
	"github.com/proofline/proofline/query/console"
	"github.com/proofline/proofline/query/spanstore"
	"github.com/proofline/proofline/schemas"
)

// Deps are the parts the API serves; nil parts' routes answer 404.
type Deps struct {
	Tokens *auth.Keys
	Ingest http.Handler
	Log    *ledger.Log
	Bus    *bus.Bus
	Spans  *spanstore.Store
	// Cost is the budget the cost KPI reports against.
	Cost spanstore.CostConfig
	// SLOs are the tool groups' objectives for the error budget KPI.
	SLOs        []spanstore.SLO
	VerifierKey string
	// PublicLog serves /checkpoint and /tile/ without a token.
	PublicLog bool
	// Checks are what /readyz reports; nil checks JetStream and the log
	// (its signed checkpoint and its self-audit).
	Checks *health.Registry
	Logger *slog.Logger
}

// NewMux routes every endpoint.
func NewMux(d Deps) http.Handler {
	mux := http.NewServeMux()
	need := func(scope auth.Scope, h http.Handler) http.Handler {
		return d.Tokens.Require(scope, func(w http.ResponseWriter, status int, err error) {
			httpx.WriteError(w, status, err.Error())
		}, h)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", d.ready)
	mux.HandleFunc("GET /v1/schemas/callrecord.v1.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/schema+json")
		_, _ = w.Write(schemas.CallRecordV1Schema)
	})
	if d.Ingest != nil {
		mux.Handle("POST /v1/records", need(auth.ScopeIngest, d.Ingest))
	}
	if d.Bus != nil {
		mux.Handle("GET /v1/deadletters", need(auth.ScopeQuery, http.HandlerFunc(d.deadLetters)))
	}
	if d.Log != nil {
		mux.HandleFunc("GET /v1/log/key", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = w.Write([]byte(d.VerifierKey + "\n"))
		})
		mux.Handle("GET /v1/proof/{record_id}", need(auth.ScopeQuery, http.HandlerFunc(d.proof)))
		mux.Handle("GET /v1/consistency", need(auth.ScopeQuery, http.HandlerFunc(d.consistency)))
		tiles := d.Log.TilesHandler()
		if !d.PublicLog {
			tiles = need(auth.ScopeQuery, tiles)
		}
		mux.Handle("GET /checkpoint", tiles)
		mux.Handle("GET /tile/", tiles)
	}
	if d.Spans != nil {
		mux.Handle("GET /v1/kpi/latency", need(auth.ScopeQuery, only([]string{"by", "window", "exact", "from", "to", "step"}, http.HandlerFunc(d.kpiLatency))))
		mux.Handle("GET /v1/spans", need(auth.ScopeQuery, only([]string{"tool", "server", "trace_id", "status", "elevated", "approver", "from", "to", "limit", "cursor"}, http.HandlerFunc(d.spans))))
		mux.Handle("GET /v1/kpi/onboarding", need(auth.ScopeQuery, only(nil, http.HandlerFunc(d.kpiOnboarding))))
		mux.Handle("GET /v1/kpi/cost", need(auth.ScopeQuery, only([]string{"at", "from", "to", "step"}, http.HandlerFunc(d.kpiCost))))
		mux.Handle("GET /v1/kpi/plans", need(auth.ScopeQuery, only([]string{"window", "at", "from", "to", "step"}, http.HandlerFunc(d.kpiPlans))))
		mux.Handle("GET /v1/kpi/errorbudget", need(auth.ScopeQuery, only([]string{"at", "from", "to", "step"}, http.HandlerFunc(d.kpiErrorBudget))))
		mux.Handle("GET /v1/catalog", need(auth.ScopeQuery, only(nil, http.HandlerFunc(d.catalog))))
	}
	if d.Spans != nil || d.Log != nil {
		// The console: static pages calling the routes above with the
		// query token the user signs in with; the pages themselves hold
		// nothing, so they need none.
		mux.Handle("GET "+console.Prefix, console.Handler())
		mux.Handle("GET /ui", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
	}
	return recoverer(d.Logger, httpx.JSONErrors(mux))
}

// ready answers 200 when every check passes, else 503; the body names
// every check with "ok" or its error. ?exclude=NAME (repeatable) leaves a
// check out, as Kubernetes' /readyz does: a load balancer in front of
// ingest can ignore the span store, whose outage ingest does not share.
func (d Deps) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := d.Checks
	if checks == nil {
		checks = health.New()
		checks.Add("jetstream", d.Bus.Ready)
		if d.Log != nil {
			checks.Add("log", d.Log.Ready)
			checks.Add("log_integrity", func(context.Context) error { return d.Log.IntegrityErr() })
			if d.Log.Witnessed() {
				checks.Add("witness", d.Log.WitnessReady)
			}
		}
	}
	rep := checks.Run(ctx, r.URL.Query()["exclude"]...)
	status := http.StatusOK
	if !rep.Ready {
		status = http.StatusServiceUnavailable
	}
	httpx.WriteJSON(w, status, rep)
}

func (d Deps) proof(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("record_id")
	b, err := d.Log.Bundle(r.Context(), id)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		httpx.WriteError(w, http.StatusNotFound, "record "+strconv.Quote(id)+" is not in the log (it may not be sequenced yet)")
	case errors.Is(err, ledger.ErrNotPublished):
		w.Header().Set("Retry-After", "1")
		httpx.WriteError(w, http.StatusTooEarly, err.Error())
	case errors.Is(err, ledger.ErrIntegrity):
		httpx.WriteErrorCode(w, http.StatusServiceUnavailable, "log_integrity", err.Error())
	case err != nil:
		d.Logger.ErrorContext(r.Context(), "proof bundle", "record_id", id, "err", err)
		httpx.WriteError(w, http.StatusInternalServerError, "could not build the proof")
	default:
		httpx.WriteJSON(w, http.StatusOK, b)
	}
}

func (d Deps) consistency(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := strconv.ParseUint(q.Get("from"), 10, 64)
	var to uint64
	var err2 error
	if s := q.Get("to"); s != "" {
		to, err2 = strconv.ParseUint(s, 10, 64)
	}
	if err1 != nil || err2 != nil {
		httpx.WriteError(w, http.StatusBadRequest, "from (and optional to) must be tree sizes, e.g. ?from=10&to=20")
		return
	}
	c, err := d.Log.ConsistencyProof(r.Context(), from, to)
	switch {
	case errors.Is(err, ledger.ErrBadRange):
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
	case err != nil:
		d.Logger.ErrorContext(r.Context(), "consistency proof", "err", err)
		httpx.WriteError(w, http.StatusInternalServerError, "could not build the proof")
	default:
		httpx.WriteJSON(w, http.StatusOK, c)
	}
}

// recoverer turns a handler panic into a 500 and a log line, so a bug in
// one request cannot take the process (and everyone's ingest) down.
func recoverer(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				logger.ErrorContext(r.Context(), "handler panic", "panic", v, "path", r.URL.Path)
				httpx.WriteError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// only answers 400 for a query parameter the endpoint does not take: a
// misspelt filter (toool=) would otherwise be ignored, and the answer
// would look like one for the filter asked.
func only(names []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.URL.Query() {
			if !slices.Contains(names, k) {
				msg := fmt.Sprintf("unknown parameter %q", k)
				if len(names) > 0 {
					msg += " (this endpoint takes " + strings.Join(names, ", ") + ")"
				}
				httpx.WriteError(w, http.StatusBadRequest, msg)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
