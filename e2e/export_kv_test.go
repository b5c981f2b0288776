package e2e

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/exporters/splunkhec/hectest"
)

// hecLeaves counts each leaf index the HEC receiver indexed.
func hecLeaves(hec *hectest.Receiver) map[uint64]int {
	out := map[uint64]int{}
	for _, ev := range hec.Indexed() {
		if f, ok := ev["fields"].(map[string]any); ok {
			if li, ok := f["leaf_index"].(float64); ok {
				out[uint64(li)]++
			}
		}
	}
	return out
}

// TestExportStateInNATSMovesHosts: two `export run` processes on
// different "hosts" (no shared directory; they read the log over HTTP)
// keep their state in a JetStream key-value bucket on a separate
// nats-server. Only one delivers; when it is killed with SIGKILL the
// standby takes the sink over once the lease runs out and delivers the
// rest from the cursor; status, replay and dead letters read the same
// bucket from anywhere.
func TestExportStateInNATSMovesHosts(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, "--roles", "ingest,signer")
	keyPath := filepath.Join(data, "keys", "log.pub")
	q := s.token("exporter", "query", "1h")
	n := startNATS(t)

	hec := hectest.New("hec-token", true)
	defer hec.Close()
	hec.Poison("kv-00007")
	tokFile := filepath.Join(t.TempDir(), "hec.token")
	writeFile(t, tokFile, []byte("hec-token\n"))
	cfg := filepath.Join(t.TempDir(), "exporters.yaml")
	writeFile(t, cfg, []byte(fmt.Sprintf(`egress_allow: [127.0.0.1]
sinks:
  - name: splunk
    type: splunk_hec
    batch_size: 50
    splunk_hec: {url: %q, token_file: %s, index: proofline, ack: true, ack_timeout: 5s}
`, hec.URL, tokFile)))
	args := []string{"--log", s.url, "--key", keyPath, "--token", q, "--exporters", cfg, "--poll", "50ms",
		"--nats", n.url(), "--lease", "2s"}

	post(t, s, "kv", 300)
	host1 := startExporter(t, args...)
	waitFor(t, "host 1 to deliver", func() (bool, string) { return len(hecLeaves(hec)) >= 299, fmt.Sprint(len(hecLeaves(hec))) })
	host2 := startExporter(t, args...)
	time.Sleep(3 * time.Second) // longer than the lease: host 1 renews it, host 2 waits
	if !strings.Contains(host2.logs(), "exporter started") {
		t.Fatalf("host 2 did not start:\n%s", host2.logs())
	}
	before := hec.Requests()
	post(t, s, "kv2", 200)
	waitFor(t, "host 1 to deliver the new records", func() (bool, string) { return len(hecLeaves(hec)) >= 499, fmt.Sprint(len(hecLeaves(hec))) })
	if hec.Requests() == before {
		t.Fatal("nothing was sent after the second post")
	}

	host1.signal(syscall.SIGKILL)
	post(t, s, "kv3", 200)
	waitFor(t, "host 2 to take the sink over and deliver the rest", func() (bool, string) {
		return len(hecLeaves(hec)) >= 699, fmt.Sprintf("%d leaves\n%s", len(hecLeaves(hec)), host2.logs())
	})
	got := hecLeaves(hec)
	for i := uint64(0); i < 700; i++ {
		if got[i] == 0 && i != 7 {
			t.Fatalf("leaf %d never reached Splunk", i)
		}
	}
	view := []string{"--nats", n.url()}
	waitFor(t, "export status --verify from the bucket", func() (bool, string) {
		out, errOut, code := cli(t, append([]string{"export", "status", "--log", s.url, "--key", keyPath, "--token", q, "--verify"}, view...)...)
		return code == 0 && strings.Contains(out, "OK: splunk"), out + errOut
	})
	out, errOut, code := cli(t, append([]string{"export", "deadletters", "--sink", "splunk"}, view...)...)
	if code != 0 || !strings.Contains(out, "kv-00007") || strings.Count(out, "\n") != 2 {
		t.Fatalf("dead letters from the bucket: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = cli(t, append([]string{"export", "replay", "--sink", "splunk", "--from", "690"}, view...)...)
	if code != 0 {
		t.Fatalf("replay: exit %d: %s%s", code, out, errOut)
	}
	waitFor(t, "host 2 to apply the replay from the bucket", func() (bool, string) {
		got := hecLeaves(hec)
		return got[695] >= 2 && got[699] >= 2, fmt.Sprint(got[695], got[699])
	})
	if _, errOut, code := cli(t, append([]string{"export", "replay", "--sink", "nosuch", "--from", "1"}, view...)...); code != 2 || !strings.Contains(errOut, `no sink "nosuch"`) {
		t.Fatalf("replay of an unknown sink: exit %d: %s", code, errOut)
	}
	// A reader does not make a bucket it is pointed at by mistake.
	if _, errOut, code := cli(t, "export", "status", "--nats", n.url(), "--kv-bucket", "typo"); code != 2 || !strings.Contains(errOut, "typo") {
		t.Fatalf("status of a bucket that does not exist: exit %d: %s", code, errOut)
	}
	if _, err := jetStreamAt(t, n.url()).KeyValue(ctxT(t, 10*time.Second), "typo"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("export status made the bucket it was pointed at: %v", err)
	}
	host2.signal(syscall.SIGTERM)
}
