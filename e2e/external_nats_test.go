package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/bus"
)

// natsProc is a nats-server process, the "external NATS" of a production
// deployment.
type natsProc struct {
	t     *testing.T
	bin   string
	store string
	addr  string
	// conf, when set, is a configuration file the server runs with
	// instead of the default flags (it then holds the listen address).
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

func natsServerBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nats-server")
	if err == nil {
		return p
	}
	for _, c := range []string{"/usr/sbin/nats-server", "/usr/bin/nats-server"} {
		if _, err := os.Stat(c); err == nil {
			return c
		}
	}
	if os.Getenv("PROOFLINE_SKIP_EXTERNAL_NATS") == "1" {
		t.Skip("nats-server not installed and PROOFLINE_SKIP_EXTERNAL_NATS=1")
	}
	t.Fatal("nats-server is not installed: run the README set-up command (it installs Debian's nats-server package)")
	return ""
}

func startNATS(t *testing.T) *natsProc { return startNATSBin(t, natsServerBinary(t)) }

func startNATSBin(t *testing.T, bin string) *natsProc {
	n := &natsProc{t: t, bin: bin, store: t.TempDir(), addr: freeAddr(t)}
	n.start()
	t.Cleanup(func() { n.stop(syscall.SIGTERM) })
	return n
}

func (n *natsProc) start() {
	n.t.Helper()
	host, port, _ := net.SplitHostPort(n.addr)
	args := []string{"-js", "-sd", n.store, "-a", host, "-p", port}
	if n.conf != "" {
		args = []string{"-c", n.conf}
	}
	n.cmd = exec.Command(n.bin, args...)
	logf, err := os.Create(filepath.Join(n.t.TempDir(), "nats.log"))
	if err != nil {
		n.t.Fatal(err)
	}
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.done = make(chan struct{})
	go func() { _ = n.cmd.Wait(); logf.Close(); close(n.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", n.addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatal("nats-server did not start listening")
}

func (n *natsProc) stop(sig syscall.Signal) {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

func (n *natsProc) url() string { return fmt.Sprintf("nats://%s", n.addr) }

// TestExternalNATS runs the whole path against a separate nats-server
// process, and restarts that server in the middle of sustained ingest:
// nothing acknowledged is lost or doubled. It runs against Debian's
// package (2.9, on which the stream keeps records for a fixed age: that
// version dropped unacknowledged records of an interest-retained stream
// when restarted here) and against the version proofline embeds (interest
// retention).
func TestExternalNATS(t *testing.T) {
	tests := []struct {
		name string
		bin  string
		// interest: the stream must retain by interest; otherwise the
		// retention is only logged (it depends on Debian's version).
		interest bool
	}{
		{"Debian's nats-server", natsServerBinary(t), false},
		{"nats-server of go.mod", builtNATS, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := startNATSBin(t, tc.bin)
			externalNATS(t, n)
			retention := streamRetention(t, n)
			t.Logf("%s: stream retention %v", tc.bin, retention)
			if tc.interest && retention != jetstream.InterestPolicy {
				t.Fatalf("stream retention %v on the current nats-server, want interest", retention)
			}
		})
	}
}

// streamRetention is the CALLS stream's retention on n.
func streamRetention(t *testing.T, n *natsProc) jetstream.RetentionPolicy {
	t.Helper()
	s, err := jetStreamAt(t, n.url()).Stream(ctxT(t, 10*time.Second), bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.Retention
}

// jetStreamAt connects a NATS client to url for the rest of the test.
func jetStreamAt(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func externalNATS(t *testing.T, n *natsProc) {
	data := t.TempDir()
	s := startServer(t, data, "--nats", n.url())
	tok := s.token("gw-1", "ingest", "1h")
	q := s.token("auditor", "query", "1h")

	// The plain path first.
	first := ids("ext", 20)
	if code, _, pr, err := s.post(tok, jsonArray(t, records(first)...), nil); err != nil || code != 202 || pr.Accepted != 20 {
		t.Fatalf("post: %d %+v %v", code, pr, err)
	}
	bundle := filepath.Join(t.TempDir(), "b.json")
	if err := os.WriteFile(bundle, s.waitProof(q, first[7]), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := cli(t, "verify", "--bundle", bundle, "--key", filepath.Join(data, "keys", "log.pub")); code != 0 {
		t.Fatalf("verify: %d %s%s", code, out, errOut)
	}

	// Now restart NATS under load.
	var g loadGen
	stop := make(chan struct{})
	var cur atomic.Pointer[server]
	cur.Store(s)
	wg := g.run(t, func() *server { return cur.Load() }, tok, "ext-load", 3, 50, stop)
	waitAcked(&g, 1000, 30*time.Second)
	n.stop(syscall.SIGTERM)
	// Meanwhile requests wait for JetStream (up to the publish timeout) or
	// fail with 503; none is answered 202 unless stored.
	time.Sleep(time.Second)
	failsDuringOutage := g.fails.Load()
	n.start()
	before := ackedCount(&g)
	waitAcked(&g, before+1000, 60*time.Second)
	close(stop)
	wg.Wait()
	if ackedCount(&g) <= before {
		t.Fatalf("ingest did not resume after NATS came back\n%s", s.logs())
	}
	t.Logf("acknowledged %d, failed requests %d (%d by the time NATS was restarted)", ackedCount(&g), g.fails.Load(), failsDuringOutage)
	for _, id := range first {
		g.acked[id] = true
	}
	checkExactlyOnce(t, s, q, g.acked)
}

func ackedCount(g *loadGen) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.acked)
}

func waitAcked(g *loadGen, n int, d time.Duration) {
	deadline := time.Now().Add(d)
	for ackedCount(g) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}
