package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/bus"
)

// natsCluster is three nats-server processes (the version go.mod pins)
// routed into one JetStream cluster.
type natsCluster struct {
	nodes map[string]*natsProc // by server name
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	names := []string{"n1", "n2", "n3"}
	routes := make([]string, len(names))
	for i := range names {
		routes[i] = fmt.Sprintf("nats://%s", freeAddr(t))
	}
	c := &natsCluster{nodes: map[string]*natsProc{}}
	for i, name := range names {
		n := &natsProc{t: t, bin: builtNATS, store: t.TempDir(), addr: freeAddr(t)}
		_, cport, _ := net.SplitHostPort(strings.TrimPrefix(routes[i], "nats://"))
		conf := fmt.Sprintf("server_name: %s\nlisten: %q\njetstream { store_dir: %q }\ncluster {\n  name: e2e\n  listen: \"127.0.0.1:%s\"\n  routes: [%s]\n}\n",
			name, n.addr, n.store, cport, strings.Join(routes, ", "))
		n.conf = filepath.Join(t.TempDir(), name+".conf")
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.start()
		t.Cleanup(func() { n.stop(syscall.SIGTERM) })
		c.nodes[name] = n
	}
	return c
}

// streamLeader waits for the CALLS stream to have a leader other than
// not (and, with allCurrent, every replica current) and returns its name.
func streamLeader(t *testing.T, js jetstream.JetStream, not string, allCurrent bool) string {
	t.Helper()
	var last string
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		s, err := js.Stream(ctxT(t, 5*time.Second), bus.StreamName)
		if err != nil {
			last = err.Error()
			continue
		}
		ci := s.CachedInfo().Cluster
		if ci == nil || ci.Leader == "" || ci.Leader == not {
			last = fmt.Sprintf("cluster info %+v", ci)
			continue
		}
		current := len(ci.Replicas) == 2
		for _, r := range ci.Replicas {
			current = current && r.Current && !r.Offline
		}
		if current || !allCurrent {
			return ci.Leader
		}
		last = fmt.Sprintf("leader %s, replicas not current", ci.Leader)
	}
	t.Fatalf("the CALLS stream has no healthy leader after 90s: %s", last)
	return ""
}

// TestPublishRecoversFromLeaderFailures kills the CALLS stream's leader
// on a 3-node cluster (R3) again and again while proofline ingests
// maximum-size batches over a connection that survives every kill.
// Publishes the dead leader never answered must not pile up in the
// client: the pending count (a metric and a /readyz check) returns to
// zero by itself, and a maximum-size batch is then stored.
func TestPublishRecoversFromLeaderFailures(t *testing.T) {
	c := startNATSCluster(t)
	home := c.nodes["n1"] // proofline's connection: never killed
	js := jetStreamAt(t, home.url())

	m := freeAddr(t)
	s := startServer(t, t.TempDir(), "--roles", "ingest", "--nats", home.url(), "--nats-replicas", "3",
		"--rate", "0", "--metrics-listen", m)
	tok := s.token("gw-1", "ingest", "1h")
	const batch = 10_000 // --max-records' default
	var seq atomic.Int64
	nextBatch := func() []byte {
		n := seq.Add(1)
		return jsonArray(t, records(ids(fmt.Sprintf("lf-%03d", n), batch))...)
	}

	// Large batches back to back; each start is announced so a kill can
	// land while one is being published.
	var (
		stop     = make(chan struct{})
		started  = make(chan struct{}, 1)
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		stored   atomic.Int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			body := nextBatch()
			select {
			case started <- struct{}{}:
			default:
			}
			code, _, _, err := s.post(tok, body, nil)
			mu.Lock()
			if err == nil {
				statuses[code]++
			}
			mu.Unlock()
			if code == http.StatusAccepted {
				stored.Add(1)
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})

	leader := streamLeader(t, js, "", true)
	const kills = 4
	for i := range kills {
		// Ingest works before each kill.
		before := stored.Load()
		for deadline := time.Now().Add(90 * time.Second); stored.Load() == before; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				mu.Lock()
				t.Fatalf("kill %d: no batch stored for 90s on a healthy cluster (statuses %v)\n%s", i, statuses, s.logs())
			}
		}
		if leader == "n1" {
			// Keep proofline's connection alive: move the leader off n1.
			if _, err := js.Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+bus.StreamName, nil, 10*time.Second); err != nil {
				t.Logf("step down: %v", err)
			}
			leader = streamLeader(t, js, "n1", true)
		}
		<-started // a batch is being published now
		victim := c.nodes[leader]
		victim.stop(syscall.SIGKILL)
		leader = streamLeader(t, js, leader, false)
		victim.start()
		leader = streamLeader(t, js, "", true)
		t.Logf("kill %d: leader now %s", i+1, leader)
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("batches during the kills: %v", statuses)
	mu.Unlock()

	// The client's pending publishes drain by themselves: the metric
	// reaches zero and /readyz is 200.
	const metric = "proofline_publish_async_pending"
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got := scrape(t, m)
		v, ok := got[metric]
		if ok && v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present %v) 60s after the last kill, want 0", metric, v, ok)
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, body := s.get("", "/readyz")
		if code == http.StatusOK && strings.Contains(string(body), `"publish_pending":"ok"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %s 60s after the last kill", code, body)
		}
	}

	// A maximum-size batch is stored (a gateway retries 503, so this
	// does too, within a deadline).
	body := nextBatch()
	var last error
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		code, _, pr, err := s.post(tok, body, nil)
		if err == nil && code == http.StatusAccepted && pr.Accepted+pr.Duplicates == batch {
			break
		}
		last = errors.Join(err, fmt.Errorf("status %d, %d accepted, error %+v", code, pr.Accepted, pr.Error))
		if time.Now().After(deadline) {
			t.Fatalf("a maximum-size batch was not stored within 60s after the kills: %v\n%s", last, s.logs())
		}
	}
}
