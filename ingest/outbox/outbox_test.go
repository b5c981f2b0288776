package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/bus"
)

// natsServer runs a real nats-server in-process on a TCP port, so a test
// can stop it and start it again on the same port and store, as an
// operator restarting NATS would.
type natsServer struct {
	t    *testing.T
	dir  string
	port int
	srv  *server.Server
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir()}
	n.start()
	n.port = n.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	port := n.port
	if port == 0 {
		port = -1
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: n.dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		n.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats-server not ready")
	}
	n.srv = srv
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// openBus connects to the server and creates proofline's streams.
func openBus(t *testing.T, url string) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Config{URL: url, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func msg(i int) publish.Message {
	id := fmt.Sprintf("rec-%05d", i)
	return publish.Message{RecordID: id, Data: []byte(`{"record_id":"` + id + `"}`)}
}

// streamIDs returns the ids of the records stored in the CALLS stream
// (alone or in envelopes), in order.
func streamIDs(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := publish.Records(m.Header, m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		for _, r := range recs {
			ids = append(ids, r.RecordID)
		}
	}
	return ids
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func open(t *testing.T, cfg Config) *Outbox {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Close(context.Background()) })
	return o
}

func TestPublishesDirectly(t *testing.T) {
	n := startNATS(t)
	b := openBus(t, n.url())
	o := open(t, Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: filepath.Join(t.TempDir(), "spool")})
	for i := range 100 {
		if err := o.Enqueue(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "100 published", func() bool { return o.Stats().Published == 100 })
	if got := streamIDs(t, b.JS); len(got) != 100 || got[0] != "rec-00000" || got[99] != "rec-00099" {
		t.Fatalf("stream holds %d records", len(got))
	}
	if s := o.Stats(); s.Spooled != 0 || s.Dropped != 0 {
		t.Fatalf("stats %+v: nothing should have been spooled", s)
	}
}

// TestSpoolsWhileNATSIsDownAndDrains: records made while NATS is down go
// to the spool, without Enqueue ever failing or waiting on NATS, and reach
// the stream once NATS is back: all of them, once each, in order.
func TestSpoolsWhileNATSIsDownAndDrains(t *testing.T) {
	n := startNATS(t)
	b := openBus(t, n.url())
	spool := filepath.Join(t.TempDir(), "spool")
	o := open(t, Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: spool,
		PublishTimeout: 200 * time.Millisecond, RetryInterval: 50 * time.Millisecond, BatchSize: 16})
	for i := range 10 {
		if err := o.Enqueue(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "first records published", func() bool { return o.Stats().Published == 10 })

	n.stop()
	for i := 10; i < 200; i++ {
		t0 := time.Now()
		if err := o.Enqueue(msg(i)); err != nil {
			t.Fatal(err)
		}
		// Not a timing assertion on speed: Enqueue must not wait for the
		// publish timeout (200 ms) at all.
		if d := time.Since(t0); d > 150*time.Millisecond {
			t.Fatalf("Enqueue waited %v while NATS was down", d)
		}
	}
	waitFor(t, "records spooled", func() bool { return o.Stats().SpoolBytes > 0 && o.Stats().Queued == 0 })
	if st, err := os.Stat(spool); err != nil || st.Size() == 0 {
		t.Fatalf("spool file: %v", err)
	}

	n.start()
	waitFor(t, "spool drained", func() bool { s := o.Stats(); return s.SpoolBytes == 0 && s.Queued == 0 })
	waitFor(t, "200 in the stream", func() bool { return len(streamIDs(t, b.JS)) >= 200 })
	ids := streamIDs(t, b.JS)
	if len(ids) != 200 {
		t.Fatalf("stream holds %d records, want 200 (none lost, none twice)", len(ids))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("%s stored twice", id)
		}
		seen[id] = true
	}
	if st, err := os.Stat(spool); err != nil || st.Size() != 0 {
		t.Fatalf("spool not emptied after drain: %v %v", st.Size(), err)
	}
}

// With the connection known to be down, records go to disk at once: none
// waits in memory for a publish that cannot succeed (here it would wait a
// minute, past waitFor's deadline), where a crash would lose it.
func TestSpoolsAtOnceWhenDisconnected(t *testing.T) {
	n := startNATS(t)
	b := openBus(t, n.url())
	pub := publish.NewPublisher(b.JS)
	o := open(t, Config{Publisher: pub, SpoolPath: filepath.Join(t.TempDir(), "spool"),
		PublishTimeout: time.Minute, RetryInterval: 50 * time.Millisecond, BatchSize: 16})
	n.stop()
	waitFor(t, "the client to notice", func() bool { return !pub.Connected() })
	for i := range 100 {
		if err := o.Enqueue(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all 100 spooled", func() bool { s := o.Stats(); return s.Spooled == 100 && s.Queued == 0 })
	n.start()
	waitFor(t, "spool drained", func() bool { s := o.Stats(); return s.SpoolBytes == 0 && s.Published == 100 })
	if ids := streamIDs(t, b.JS); len(ids) != 100 {
		t.Fatalf("stream holds %d records, want 100", len(ids))
	}
}

// TestSpoolSurvivesRestart: what is spooled when the producer stops is
// drained by the next process that opens the spool.
func TestSpoolSurvivesRestart(t *testing.T) {
	n := startNATS(t)
	b := openBus(t, n.url())
	spool := filepath.Join(t.TempDir(), "spool")
	pub := publish.NewPublisher(b.JS)
	n.stop()
	// Until the client notices the outage, a publish hands it messages it
	// keeps and sends after reconnecting, ahead of the spool's drain; this
	// test is about the spool, so it starts once the outage is known.
	waitFor(t, "the client to notice", func() bool { return !pub.Connected() })
	o, err := Open(Config{Publisher: pub, SpoolPath: spool,
		PublishTimeout: 100 * time.Millisecond, RetryInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := o.Enqueue(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A torn line at the end, as a crash mid-append leaves it.
	f, err := os.OpenFile(spool, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`rec-99999 {"record_id":"rec-9`)
	_ = f.Close()

	n.start()
	o2 := open(t, Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: spool, RetryInterval: 50 * time.Millisecond})
	waitFor(t, "50 in the stream", func() bool { return len(streamIDs(t, b.JS)) >= 50 })
	waitFor(t, "spool drained", func() bool { return o2.Stats().SpoolBytes == 0 })
	ids := streamIDs(t, b.JS)
	if len(ids) != 50 || ids[0] != "rec-00000" || ids[49] != "rec-00049" {
		t.Fatalf("after restart the stream holds %d records: %v", len(ids), ids)
	}
}

func TestFullSpoolRefuses(t *testing.T) {
	n := startNATS(t)
	b := openBus(t, n.url())
	n.stop()
	reader := sdkmetric.NewManualReader()
	o := open(t, Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: filepath.Join(t.TempDir(), "spool"),
		SpoolMaxBytes: 1000, QueueSize: 1, PublishTimeout: 50 * time.Millisecond, RetryInterval: time.Hour,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	var full int
	for i := range 200 {
		if err := o.Enqueue(msg(i)); errors.Is(err, ErrFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "spool at capacity", func() bool { return o.Full() })
	// The state is visible as metrics.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					st, _ := p.Attributes.Value("state")
					got[m.Name+"/"+st.AsString()] = p.Value
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] = p.Value
				}
			}
		}
	}
	if got["proofline.outbox.spool.full"] != 1 || got["proofline.outbox.records/dropped"] == 0 || got["proofline.outbox.spool.limit/"] != 1000 || got["proofline.outbox.spool.usage/"] == 0 {
		t.Fatalf("metrics %v", got)
	}
	if full == 0 || o.Stats().Dropped == 0 {
		t.Fatalf("a 1000-byte spool took 200 records: %+v", o.Stats())
	}
	if o.Stats().SpoolBytes > 1000 {
		t.Fatalf("spool grew past its bound: %+v", o.Stats())
	}
}
