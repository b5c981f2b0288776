package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/metrics"
	"github.com/proofline/proofline/internal/supervise"
	"github.com/proofline/proofline/ledger"
	"github.com/proofline/proofline/query/spanstore"
)

// spanCursorDir holds the span store's cursor in the log (an exporters
// state directory of its own, apart from DATA/exporters, so `proofline
// export run --data` can run beside serve).
const spanCursorDir = "spanstore-cursor"

// spanSink is the span store as a sink of the exporters runner. Rows
// ClickHouse refuses also go to the DEADLETTER stream under the span
// store's name, where /v1/deadletters and `proofline dlq list` show them
// with ClickHouse's reason.
type spanSink struct {
	ls  *spanstore.LogSink
	bus *bus.Bus
}

func (s *spanSink) Send(ctx context.Context, b exporters.Batch) error {
	if len(b.Events) == 0 {
		return nil // a checkpoint alone: rows carry their leaf, the anchors stay in the log
	}
	leaves := make([]spanstore.Leaf, len(b.Events))
	for i, e := range b.Events {
		leaves[i] = spanstore.Leaf{Origin: e.Evidence.Origin, Index: e.Evidence.LeafIndex, Record: e.Record}
	}
	rejected, err := s.ls.Write(ctx, leaves)
	if err != nil || len(rejected) == 0 {
		return err
	}
	reasons := make(map[int]string, len(rejected))
	for i, why := range rejected {
		// Should this fail, the batch comes again: the stored rows are
		// looked up and not inserted twice, the refused one is refused
		// again and dead-lettered then.
		if err := s.bus.DeadLetter(ctx, bus.SpanConsumer, b.Events[i].Record, why); err != nil {
			return fmt.Errorf("dead-letter leaf %d: %w", b.Events[i].Evidence.LeafIndex, err)
		}
		reasons[i] = why.Error()
	}
	return &exporters.RejectedError{Reasons: reasons}
}

func (s *spanSink) Close(context.Context) error { return nil }

// spanRole keeps the span store following the log: it connects to
// ClickHouse and applies the schema first, so a ClickHouse that is down
// (at start or later) only degrades this role, which the supervisor
// retries with backoff while /readyz names it; then it runs the exporters
// runner with the span store as its one sink, from its cursor in the data
// directory. Before the writer starts it syncs the SLO rollup to slos'
// objectives (refilling it when they changed); while it runs, it seals
// the plans of finished hours every sealEvery (--plan-seal-every).
func spanRole(spans *spanstore.Store, slos []spanstore.SLO, sealEvery time.Duration, b *bus.Bus, lg *ledger.Log, v note.Verifier, data string, met *metrics.Registry, logger *slog.Logger) supervise.Role {
	var migrated atomic.Bool
	sink := &spanSink{ls: spanstore.NewLogSink(spans), bus: b}
	src := exporters.NewFileSource(lg.TilesDir(), v)
	log := logger.With("role", "spanstore")
	return supervise.Role{
		Name: "spanstore",
		Run: func(ctx context.Context) error {
			if !migrated.Load() {
				if err := spans.Ping(ctx); err != nil {
					return err
				}
				if err := spans.Migrate(ctx); err != nil {
					return err
				}
				if err := spans.SyncObjectives(ctx, slos); err != nil {
					return err
				}
				migrated.Store(true)
			}
			// Plans are sealed while the writer runs (see
			// spanstore.SealPlans); a failed seal is retried at the next
			// tick, and meanwhile the plans KPI groups every plan.
			sctx, stopSealing := context.WithCancel(ctx)
			defer stopSealing()
			go sealPlans(sctx, spans, sealEvery, log)
			st, err := exporters.OpenStateDir(filepath.Join(data, spanCursorDir))
			if err != nil {
				return err
			}
			defer st.Close()
			// The runner's per-sink metrics, with sink="spans": the span
			// store's lag behind the log (the stream's consumer backlog
			// no longer covers it).
			var reg prometheus.Registerer
			if met != nil {
				reg = met.ForAttempt("spanstore")
			}
			rn, err := exporters.New(exporters.Config{
				Source: src, State: st,
				Sinks: []exporters.SinkSpec{{Name: "spans", Sink: sink,
					// Large inserts are what ClickHouse wants.
					BatchSize: 5000,
					// A ClickHouse back up is noticed within seconds.
					BreakerOpen: 5 * time.Second}},
				// Spans are queried seconds after the call: follow each
				// checkpoint (every 200 ms by default) closely.
				PollInterval: 200 * time.Millisecond,
				MaxBackoff:   10 * time.Second,
				Logger:       log,
				Registerer:   reg,
			})
			if err != nil {
				return err
			}
			return rn.Run(ctx)
		},
		Health: func() error {
			if !migrated.Load() {
				return errors.New("connecting to ClickHouse")
			}
			return sink.ls.Err()
		},
	}
}

// sealPlans seals every tick: an hour's plans become sealable once an
// hour, so a minute (the default) seals each within a minute of that.
func sealPlans(ctx context.Context, spans *spanstore.Store, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := spans.SealPlans(ctx); err != nil && ctx.Err() == nil {
			log.Warn("sealing plans", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
