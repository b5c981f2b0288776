package otelexporter

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/testpki"
	"github.com/proofline/proofline/schemas"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// openBus starts proofline's embedded JetStream listening on addr, with
// the CALLS stream created exactly as `proofline serve` creates it.
func openBus(t *testing.T, addr string) *bus.Bus {
	t.Helper()
	b, err := bus.Open(ctxT(t, 30*time.Second), bus.Config{DataDir: t.TempDir(), Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// startNATS runs a nats-server in the test process on a free loopback
// port with opts' other settings (auth, JetStream), for the tests whose
// server is not proofline's own (bus.Open).
func startNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return srv
}

// storedRecords reads every message of the CALLS stream, by record id.
func storedRecords(t *testing.T, js jetstream.JetStream) map[string]*schemas.CallRecord {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	s, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*schemas.CallRecord{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		recs, err := publish.Records(m.Header, m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		for _, rec := range recs {
			r, ok := schemas.IsCanonicalRecord(rec.Data)
			if !ok {
				t.Fatalf("message %d holds a record that is not a canonical call record (the signer would reject it): %s", seq, rec.Data)
			}
			if rec.RecordID != r.RecordID {
				t.Fatalf("message %d: carried as %q, record id %q", seq, rec.RecordID, r.RecordID)
			}
			if len(recs) == 1 && m.Header.Get(jetstream.MsgIDHeader) != publish.MsgID(r.RecordID, m.Data) {
				t.Fatalf("message %d: Nats-Msg-Id %q, record id %q", seq, m.Header.Get(jetstream.MsgIDHeader), r.RecordID)
			}
			if _, dup := out[r.RecordID]; dup {
				t.Fatalf("record %s stored twice", r.RecordID)
			}
			out[r.RecordID] = r
		}
	}
	return out
}

// newExporter creates an exporter through the factory, as the Collector
// does, with its telemetry readable by the test. It is shut down at the
// end of the test unless the test shut it down itself (exporterhelper
// allows one Shutdown only).
func newExporter(t *testing.T, cfg *Config) (exporter.Traces, *componenttest.Telemetry) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	set := exportertest.NewNopSettings(component.MustNewType(TypeStr))
	set.TelemetrySettings = tel.NewTelemetrySettings()
	exp, err := NewFactory().CreateTraces(ctxT(t, 10*time.Second), set, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Start(ctxT(t, 10*time.Second), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	once := &onceShutdown{Traces: exp}
	t.Cleanup(func() { _ = once.Shutdown(context.Background()) })
	return once, tel
}

// onceShutdown makes Shutdown idempotent.
type onceShutdown struct {
	exporter.Traces
	once sync.Once
	err  error
}

func (o *onceShutdown) Shutdown(ctx context.Context) error {
	o.once.Do(func() { o.err = o.Traces.Shutdown(ctx) })
	return o.err
}

// syncConfig has no sending queue, so ConsumeTraces returns the
// exporter's own verdict on the batch.
func syncConfig(url string) *Config {
	c := testConfig()
	c.NATSURL = url
	c.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	c.BackOffConfig.Enabled = false
	return c
}

// counter returns the value of a counter for the given outcome ("" for
// a counter without attributes).
func counter(t *testing.T, tel *componenttest.Telemetry, name, outcome string) int64 {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is %T, want an int64 sum", name, m.Data)
	}
	var n int64
	for _, dp := range sum.DataPoints {
		if v, _ := dp.Attributes.Value("outcome"); v.AsString() == outcome {
			n += dp.Value
		}
	}
	return n
}

// toolCalls is a batch: two tool calls, an unrelated span and a tool call
// whose record is invalid.
func toolCalls() ptrace.Traces {
	td := ptrace.NewTraces()
	addSpan(td, mcpCall())
	s := addSpan(td, with(mcpCall(), map[string]any{"gen_ai.tool.name": "create_ticket"}))
	s.SetSpanID(pcommon.SpanID{1, 2, 3, 4, 5, 6, 7, 8})
	addSpan(td, spanSpec{name: "GET /healthz", attrs: map[string]any{"http.request.method": "GET"}})
	bad := addSpan(td, with(mcpCall(), map[string]any{"tool.group": strings.Repeat("g", 300)}))
	bad.SetSpanID(pcommon.SpanID{9, 9, 9, 9, 9, 9, 9, 9})
	return td
}

func TestExporterPublishesAcknowledgedRecords(t *testing.T) {
	b := openBus(t, freeAddr(t))
	exp, tel := newExporter(t, syncConfig(b.ClientURL()))

	if err := exp.ConsumeTraces(ctxT(t, 10*time.Second), toolCalls()); err != nil {
		t.Fatalf("ConsumeTraces: %v", err)
	}
	// ConsumeTraces returned: JetStream has acknowledged every record.
	recs := storedRecords(t, b.JS)
	if len(recs) != 2 {
		t.Fatalf("stream holds %d records, want 2: %v", len(recs), recs)
	}
	r := recs[wantRecordID]
	if r == nil || r.IngestedBy != "collector-1" || r.Tool.Name != "search_tickets" || r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("record %s: %+v", wantRecordID, r)
	}
	if recs["otel-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708"] == nil {
		t.Fatalf("second tool call missing: %v", recs)
	}
	if got := [3]int64{counter(t, tel, MetricRecords, OutcomeStored), counter(t, tel, MetricRecords, OutcomeInvalid), counter(t, tel, MetricSpansIgnored, "")}; got != [3]int64{2, 1, 1} {
		t.Fatalf("stored, invalid, ignored = %v, want [2 1 1]", got)
	}

	// The same spans again (a Collector retry, or a client re-sending):
	// JetStream reports duplicates, the stream does not grow.
	if err := exp.ConsumeTraces(ctxT(t, 10*time.Second), toolCalls()); err != nil {
		t.Fatalf("ConsumeTraces again: %v", err)
	}
	if n := len(storedRecords(t, b.JS)); n != 2 {
		t.Fatalf("after re-sending, stream holds %d records, want 2", n)
	}
	if got := counter(t, tel, MetricRecords, OutcomeDuplicate); got != 2 {
		t.Fatalf("duplicates = %d, want 2", got)
	}
}

func TestExporterBatchVerdicts(t *testing.T) {
	b := openBus(t, freeAddr(t))
	exp, _ := newExporter(t, syncConfig(b.ClientURL()))

	onlyInvalid := ptrace.NewTraces()
	addSpan(onlyInvalid, with(mcpCall(), map[string]any{"proofline.args_sha256": "xyz"}))
	addSpan(onlyInvalid, spanSpec{name: "GET /"}) // ignored, not invalid
	err := exp.ConsumeTraces(ctxT(t, 10*time.Second), onlyInvalid)
	if err == nil || !consumererror.IsPermanent(err) {
		t.Fatalf("a batch whose every tool call is invalid: %v, want a permanent error", err)
	}

	onlyUnrelated := ptrace.NewTraces()
	addSpan(onlyUnrelated, spanSpec{name: "GET /"})
	addSpan(onlyUnrelated, spanSpec{name: "SELECT", attrs: map[string]any{"db.system.name": "postgresql"}})
	if err := exp.ConsumeTraces(ctxT(t, 10*time.Second), onlyUnrelated); err != nil {
		t.Fatalf("a batch without tool calls: %v, want nil", err)
	}
	if n := len(storedRecords(t, b.JS)); n != 0 {
		t.Fatalf("stream holds %d records, want none", n)
	}
}

// TestExporterRetriesUntilNATSIsUp starts the exporter while nothing
// listens at its NATS URL: start-up succeeds, an attempt fails with a
// retryable error, and with retry on, the batch is delivered once NATS
// is up, exactly once.
func TestExporterRetriesUntilNATSIsUp(t *testing.T) {
	addr := freeAddr(t)
	url := "nats://" + addr

	noRetry := syncConfig(url)
	noRetry.Timeout = 300 * time.Millisecond
	once, _ := newExporter(t, noRetry)
	err := once.ConsumeTraces(ctxT(t, 10*time.Second), toolCalls())
	if err == nil || consumererror.IsPermanent(err) {
		t.Fatalf("NATS down: %v, want a retryable error", err)
	}

	withRetry := syncConfig(url)
	withRetry.Timeout = 500 * time.Millisecond
	withRetry.BackOffConfig.Enabled = true
	withRetry.BackOffConfig.InitialInterval = 50 * time.Millisecond
	withRetry.BackOffConfig.MaxInterval = 200 * time.Millisecond
	withRetry.BackOffConfig.MaxElapsedTime = time.Minute
	retrying, tel := newExporter(t, withRetry)
	done := make(chan error, 1)
	go func() { done <- retrying.ConsumeTraces(ctxT(t, time.Minute), toolCalls()) }()

	// The batch is still being retried: it cannot have succeeded without NATS.
	select {
	case err := <-done:
		t.Fatalf("ConsumeTraces returned %v before NATS was up", err)
	default:
	}
	b := openBus(t, addr)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ConsumeTraces after NATS came up: %v", err)
		}
	case <-time.After(50 * time.Second):
		t.Fatal("batch not delivered 50s after NATS came up")
	}
	if n := len(storedRecords(t, b.JS)); n != 2 {
		t.Fatalf("stream holds %d records, want 2", n)
	}
	// Stored now or by an earlier attempt whose publish NATS buffered:
	// either way each record is reported once.
	if got := counter(t, tel, MetricRecords, OutcomeStored) + counter(t, tel, MetricRecords, OutcomeDuplicate); got != 2 {
		t.Fatalf("stored + duplicate = %d, want 2", got)
	}
}

// TestExporterNeverCreatesTheStream points the exporter at a NATS server
// with JetStream but no CALLS stream (proofline serve not started yet):
// the batch fails, retryably, and the stream still does not exist. The
// server requires a user and password, which the exporter presents.
func TestExporterNeverCreatesTheStream(t *testing.T) {
	srv := startNATS(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), Username: "collector", Password: "s3cret"})

	cfg := syncConfig(srv.ClientURL())
	cfg.User, cfg.Password = "collector", "s3cret"
	cfg.Timeout = time.Second
	e, err := newTracesExporter(cfg, exportertest.NewNopSettings(component.MustNewType(TypeStr)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.start(ctxT(t, 10*time.Second), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.shutdown(context.Background()) })
	if !e.nc.IsConnected() {
		t.Fatalf("not connected with user/password: %v", e.nc.LastError())
	}
	err = e.pushTraces(ctxT(t, 10*time.Second), toolCalls())
	if err == nil || consumererror.IsPermanent(err) || !strings.Contains(err.Error(), bus.StreamName) {
		t.Fatalf("no stream: %v, want a retryable error naming %s", err, bus.StreamName)
	}

	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("collector", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctxT(t, 10*time.Second), bus.StreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream lookup: %v, want stream not found", err)
	}
}

// TestExporterDefaultQueueDeliversBeforeShutdown runs the default
// configuration (sending queue on): ConsumeTraces only enqueues, and
// Shutdown drains the queue, so afterwards the records are stored.
func TestExporterDefaultQueueDeliversBeforeShutdown(t *testing.T) {
	b := openBus(t, freeAddr(t))
	cfg := testConfig()
	cfg.NATSURL = b.ClientURL()
	exp, _ := newExporter(t, cfg)
	if err := exp.ConsumeTraces(ctxT(t, 10*time.Second), toolCalls()); err != nil {
		t.Fatal(err)
	}
	if err := exp.Shutdown(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := len(storedRecords(t, b.JS)); n != 2 {
		t.Fatalf("stream holds %d records after shutdown, want 2", n)
	}
}

// TestExporterTokenFile authenticates with the token file `proofline
// serve --nats-listen` writes; a missing or empty file fails the start.
func TestExporterTokenFile(t *testing.T) {
	const token = "4f1c0ffee4f1c0ffee"
	srv := startNATS(t, &server.Options{Authorization: token})
	dir := t.TempDir()
	good, empty := filepath.Join(dir, "nats.token"), filepath.Join(dir, "empty.token")
	if err := os.WriteFile(good, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, wantErr string
	}{
		{"token file", good, ""},
		{"missing file", filepath.Join(dir, "absent.token"), "token_file"},
		{"empty file", empty, "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := syncConfig(srv.ClientURL())
			cfg.TokenFile = tt.file
			e, err := newTracesExporter(cfg, exportertest.NewNopSettings(component.MustNewType(TypeStr)))
			if err != nil {
				t.Fatal(err)
			}
			err = e.start(ctxT(t, 10*time.Second), componenttest.NewNopHost())
			t.Cleanup(func() { _ = e.shutdown(context.Background()) })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("start = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !e.nc.IsConnected() {
				t.Fatalf("not connected with the token file: %v", e.nc.LastError())
			}
		})
	}
}

// TestExporterTLS publishes to a NATS that speaks TLS only (proofline's
// embedded server with --nats-listen-cert): with the CA in the tls section
// the records are stored; without it the batch is refused as retryable and
// nothing reaches the stream; a CA file that cannot be read fails start.
func TestExporterTLS(t *testing.T) {
	pki := testpki.New(t)
	addr := freeAddr(t)
	b, err := bus.Open(ctxT(t, 30*time.Second), bus.Config{DataDir: t.TempDir(), Listen: addr, ListenCertFile: pki.ServerCert, ListenKeyFile: pki.ServerKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	url := "tls://" + addr

	untrusting := syncConfig(url)
	exp, _ := newExporter(t, untrusting)
	err = exp.ConsumeTraces(ctxT(t, 10*time.Second), toolCalls())
	if err == nil || consumererror.IsPermanent(err) {
		t.Fatalf("without the CA: %v, want a retryable error", err)
	}
	if n := len(storedRecords(t, b.JS)); n != 0 {
		t.Fatalf("without the CA the stream holds %d records", n)
	}

	trusting := syncConfig(url)
	trusting.TLS = configoptional.Some(configtls.ClientConfig{Config: configtls.Config{CAFile: pki.CAFile}})
	exp, _ = newExporter(t, trusting)
	if err := exp.ConsumeTraces(ctxT(t, 10*time.Second), toolCalls()); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if n := len(storedRecords(t, b.JS)); n != 2 {
		t.Fatalf("with the CA the stream holds %d records, want 2", n)
	}

	broken := syncConfig(url)
	broken.TLS = configoptional.Some(configtls.ClientConfig{Config: configtls.Config{CAFile: filepath.Join(t.TempDir(), "absent.pem")}})
	e, err := newTracesExporter(broken, exportertest.NewNopSettings(component.MustNewType(TypeStr)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.start(ctxT(t, 10*time.Second), componenttest.NewNopHost()); err == nil || !strings.Contains(err.Error(), "nats tls") {
		t.Fatalf("start with a missing CA file: %v, want a nats tls error", err)
	}
	_ = e.shutdown(context.Background())
}
