package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadGen posts batches of fresh records until stop is closed, and keeps
// the ids the server acknowledged with 202 (as accepted or duplicate).
type loadGen struct {
	mu    sync.Mutex
	acked map[string]bool
	sent  atomic.Int64
	fails atomic.Int64
}

func (g *loadGen) run(t *testing.T, s func() *server, tok, prefix string, workers, batch int, stop <-chan struct{}) *sync.WaitGroup {
	g.acked = map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				batchIDs := make([]string, batch)
				for i := range batchIDs {
					batchIDs[i] = fmt.Sprintf("%s-w%d-%06d-%03d", prefix, w, n, i)
				}
				g.sent.Add(int64(batch))
				code, _, pr, err := s().post(tok, jsonArray(t, records(batchIDs)...), nil)
				if err != nil || code != http.StatusAccepted {
					g.fails.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				g.mu.Lock()
				for _, r := range pr.Results {
					if r.Status == "accepted" || r.Status == "duplicate" {
						g.acked[r.RecordID] = true
					}
				}
				g.mu.Unlock()
			}
		}()
	}
	return &wg
}

// checkExactlyOnce waits until every acknowledged record is provable and
// checks the whole log holds each record at most once.
func checkExactlyOnce(t *testing.T, s *server, q string, acked map[string]bool) {
	t.Helper()
	for id := range acked {
		s.waitProof(q, id)
	}
	keyPath := filepath.Join(s.data, "keys", "log.pub")
	counts, size := logRecordIDs(t, s, q, keyPath)
	for id, n := range counts {
		if n != 1 {
			t.Errorf("%s is in the log %d times", id, n)
		}
	}
	for id := range acked {
		if counts[id] != 1 {
			t.Errorf("acknowledged record %s is in the log %d times", id, counts[id])
		}
	}
	t.Logf("log size %d, acknowledged %d, in log %d", size, len(acked), len(counts))
	out, errOut, code := cli(t, "verify", "--log", s.url, "--key", keyPath, "--token", q, "--state", filepath.Join(t.TempDir(), "st.json"))
	if code != 0 {
		t.Fatalf("verify --log after recovery: exit %d\n%s%s", code, out, errOut)
	}
	// The span store holds exactly the records of the log, once each.
	deadline := time.Now().Add(90 * time.Second)
	for {
		spans := spanIDs(t, s, q)
		if len(spans) == len(counts) {
			for id, n := range spans {
				if n != 1 || counts[id] != 1 {
					t.Fatalf("span %s: %d rows, %d leaves", id, n, counts[id])
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("span store has %d records, the log %d\n%s", len(spans), len(counts), s.logs())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// spanIDs pages through every span and counts each record id.
func spanIDs(t *testing.T, s *server, q string) map[string]int {
	t.Helper()
	out := map[string]int{}
	eachSpan(t, s, q, "limit=1000", func(id, _ string) { out[id]++ })
	return out
}

// eachSpan pages through /v1/spans?query with the API's cursor and calls
// fn with each span's record id and evidence origin.
func eachSpan(t *testing.T, s *server, q, query string, fn func(recordID, logOrigin string)) {
	t.Helper()
	cursor := ""
	for {
		code, raw := s.get(q, "/v1/spans?"+query+"&cursor="+cursor)
		if code != http.StatusOK {
			t.Fatalf("/v1/spans: %d %s", code, raw)
		}
		var page struct {
			Spans []struct {
				RecordID  string `json:"record_id"`
				LogOrigin string `json:"log_origin"`
			} `json:"spans"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			t.Fatal(err)
		}
		for _, sp := range page.Spans {
			fn(sp.RecordID, sp.LogOrigin)
		}
		if page.Next == "" {
			return
		}
		cursor = page.Next
	}
}

// TestKill9DuringIngest: kill -9 the server three times under sustained
// ingest, restarting it each time while the load goes on (so the later
// kills hit a server that is still catching up on what the earlier one
// left in the stream). After the last restart every record that got a 202
// is in the log exactly once, the log verifies, and the span store holds
// exactly the log's records, once each (checkExactlyOnce).
func TestKill9DuringIngest(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	tok := s.token("gw-1", "ingest", "1h")
	q := s.token("auditor", "query", "1h")

	var g loadGen
	stop := make(chan struct{})
	var cur atomic.Pointer[server]
	cur.Store(s)
	wg := g.run(t, func() *server { return cur.Load() }, tok, "crash", 4, 100, stop)
	const kills = 3
	for k := 1; k <= kills; k++ {
		// Kill once enough more has been acknowledged to be sure records
		// are in every stage: stored in JetStream, being sequenced, in the
		// log, being written as spans.
		before := ackedCount(&g)
		waitAcked(&g, before+1500, 60*time.Second)
		if n := ackedCount(&g); n < before+500 {
			t.Fatalf("kill %d: only %d records acknowledged since the last restart; the load generator did not load\n%s", k, n-before, cur.Load().logs())
		}
		cur.Load().kill9()
		if k < kills {
			// A fresh server value: the load generator reads the old
			// one's URL concurrently, so it is not restarted in place.
			cur.Store(restart(t, cur.Load()))
		}
	}
	close(stop)
	wg.Wait()
	s = restart(t, cur.Load())
	t.Logf("%d kills, %d records acknowledged, %d requests failed", kills, ackedCount(&g), g.fails.Load())
	checkExactlyOnce(t, s, q, g.acked)
}

// restart starts a new server process on old's data directory and flags
// (old must have exited).
func restart(t *testing.T, old *server) *server {
	t.Helper()
	s := &server{t: t, data: old.data, args: old.args}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// TestSIGTERMDuringIngest: a graceful stop under sustained ingest finishes
// the batch in flight, exits promptly, and loses nothing acknowledged.
func TestSIGTERMDuringIngest(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	tok := s.token("gw-1", "ingest", "1h")
	q := s.token("auditor", "query", "1h")
	var g loadGen
	stop := make(chan struct{})
	wg := g.run(t, func() *server { return s }, tok, "term", 4, 100, stop)
	waitAcked(&g, 2000, 30*time.Second)
	start := time.Now()
	s.stop() // fails the test if the server does not exit within 20s
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	s.start()
	checkExactlyOnce(t, s, q, g.acked)
}
