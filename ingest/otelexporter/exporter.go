package otelexporter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/proofline/proofline/ingest/publish"
)

// maxPendingPublishes bounds the asynchronous publishes in flight on the
// connection: a whole default batch (8192 spans) and then some, as for
// the HTTP ingest.
const maxPendingPublishes = 32768

// tracesExporter is one proofline exporter instance: a NATS connection
// and the publisher on it.
type tracesExporter struct {
	cfg    *Config
	id     component.ID
	logger *zap.Logger
	mapper *Mapper
	tel    *telemetry

	nc  *nats.Conn
	pub *publish.Publisher
}

func newTracesExporter(cfg *Config, set exporter.Settings) (*tracesExporter, error) {
	tel, err := newTelemetry(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &tracesExporter{cfg: cfg, id: set.ID, logger: set.Logger, mapper: NewMapper(cfg), tel: tel}, nil
}

// start connects to NATS. An unreachable server is not a start-up error:
// NATS restarts are routine, the connection keeps retrying in the
// background, and until it is up every batch fails with a retryable
// error that exporterhelper's queue and retry absorb.
func (e *tracesExporter) start(ctx context.Context, _ component.Host) error {
	opts := []nats.Option{
		nats.Name("proofline-collector " + e.id.String()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			e.logger.Warn("nats disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			e.logger.Info("nats connected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			e.logger.Warn("nats error", zap.Error(err))
		}),
	}
	switch {
	case e.cfg.Token != "":
		opts = append(opts, nats.Token(string(e.cfg.Token)))
	case e.cfg.TokenFile != "":
		// A missing or empty token file is a configuration error: fail
		// the start rather than retry forever against an auth refusal.
		b, err := os.ReadFile(e.cfg.TokenFile)
		if err != nil {
			return fmt.Errorf("nats token_file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return fmt.Errorf("nats token_file %s is empty", e.cfg.TokenFile)
		}
		opts = append(opts, nats.Token(tok))
	case e.cfg.User != "":
		opts = append(opts, nats.UserInfo(e.cfg.User, string(e.cfg.Password)))
	case e.cfg.CredentialsFile != "":
		opts = append(opts, nats.UserCredentials(e.cfg.CredentialsFile))
	}
	if tc := e.cfg.TLS.Get(); tc != nil {
		// A CA or certificate that cannot be loaded is a configuration
		// error: fail the start, as for a missing token file.
		tlsCfg, err := tc.LoadTLSConfig(ctx)
		if err != nil {
			return fmt.Errorf("nats tls: %w", err)
		}
		if tlsCfg != nil { // nil: `insecure: true`, plain text
			opts = append(opts, nats.Secure(tlsCfg))
		}
	}
	nc, err := nats.Connect(e.cfg.NATSURL, opts...)
	if err != nil {
		return fmt.Errorf("connect to nats %s: %w", e.cfg.NATSURL, err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPendingPublishes),
		jetstream.WithPublishAsyncTimeout(e.cfg.publishAckTimeout()))
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	e.nc, e.pub = nc, publish.NewPublisher(js)
	if nc.IsConnected() {
		e.logger.Info("nats connected", zap.String("url", nc.ConnectedUrlRedacted()))
	} else {
		e.logger.Warn("nats not reachable yet; retrying in the background", zap.String("url", e.cfg.NATSURL))
	}
	return nil
}

// shutdown runs after exporterhelper has drained its queue. Every batch
// pushed so far has been acknowledged or failed, so nothing is left to
// flush: closing is enough, and does not hang while NATS is down.
func (e *tracesExporter) shutdown(context.Context) error {
	if e.nc != nil {
		e.nc.Close()
	}
	return nil
}

// pushTraces maps td and publishes its records, returning only once
// JetStream has acknowledged all of them. Its error decides what the
// Collector does with the batch: nil (done), retryable (NATS or the
// stream unavailable: the same records are published again, and their
// ids make that harmless) or permanent (nothing in it can ever be a
// record).
func (e *tracesExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	b := e.mapper.Map(td)
	if len(b.Messages) == 0 {
		e.done(ctx, b, 0, 0)
		if len(b.Invalid) > 0 {
			return consumererror.NewPermanent(fmt.Errorf("none of the %d tool-call spans is a valid call record (first: %s: %w)",
				len(b.Invalid), b.Invalid[0].RecordID, b.Invalid[0].Err))
		}
		return nil
	}
	if e.pub == nil {
		return errors.New("proofline exporter not started")
	}
	acks, err := e.pub.Publish(ctx, b.Messages)
	if err != nil {
		// Retryable: exporterhelper retries the whole batch; what did get
		// stored is reported as duplicate then.
		return fmt.Errorf("publish %d call records to stream %s at %s (is `proofline serve` running on this NATS?): %w",
			len(b.Messages), publish.Stream, e.cfg.NATSURL, err)
	}
	stored, dup := 0, 0
	for _, a := range acks {
		if a.Duplicate {
			dup++
		} else {
			stored++
		}
	}
	e.done(ctx, b, stored, dup)
	return nil
}

// done logs and counts a batch once its fate is settled. A batch that
// failed with a retryable error is counted when it is retried, so no
// record is counted twice.
func (e *tracesExporter) done(ctx context.Context, b Batch, stored, dup int) {
	for _, inv := range b.Invalid {
		e.logger.Warn("dropping span: not a valid call record", zap.String("record_id", inv.RecordID), zap.Error(inv.Err))
	}
	e.tel.add(ctx, stored, dup+b.Repeated, len(b.Invalid), b.Ignored)
	if ce := e.logger.Check(zap.DebugLevel, "published call records"); ce != nil {
		ce.Write(zap.Int("stored", stored), zap.Int("duplicates", dup+b.Repeated),
			zap.Int("invalid", len(b.Invalid)), zap.Int("ignored_spans", b.Ignored))
	}
}
