// Command spanfeed measures how fast call records reach the span store
// through a real `proofline serve` (all roles, embedded chDB): it posts
// realistic records (random UUIDv7 ids, random SHA-256 digests and W3C
// ids) and reports the time until every one is in the span store's
// latency rollup, and the server's CPU per record. Run it against two
// builds (e.g. before and after a change of the span path) alternately.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var tools = []string{"search_tickets", "create_ticket", "get_page", "send_email", "transfer_funds", "list_files", "read_file", "query_db"}

func main() {
	n := flag.Int("records", 50000, "records to post")
	batch := flag.Int("batch", 500, "records per request")
	workers := flag.Int("workers", 4, "concurrent posting clients")
	bin := flag.String("proofline", "bin/proofline", "the proofline binary")
	flag.Parse()
	if err := run(*n, *batch, *workers, *bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func token(bin, data, principal, scope string) (string, error) {
	out, err := exec.Command(bin, "token", "issue", "--data", data, "--principal", principal, "--scope", scope, "--ttl", "1h").Output()
	return strings.TrimSpace(string(out)), err
}

// cpuSeconds is the process's user+system CPU time from /proc.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // USER_HZ
}

func run(n, batch, workers int, bin string) error {
	data, err := os.MkdirTemp("", "bench-spanfeed")
	if err != nil {
		return err
	}
	defer os.RemoveAll(data)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	srv := exec.Command(bin, "serve", "--data", data, "--listen", addr, "--origin", "bench.proofline/spanfeed", "--rate", "0", "--log-level", "warn")
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Signal(os.Interrupt); srv.Wait() }()
	base := "http://" + addr
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("serve not ready")
		}
	}
	ingestTok, err := token(bin, data, "gw", "ingest")
	if err != nil {
		return err
	}
	queryTok, err := token(bin, data, "sre", "query")
	if err != nil {
		return err
	}
	// Bodies are made before the clock starts.
	now := time.Now().UTC().Add(-time.Minute)
	var bodies [][]byte
	for off := 0; off < n; off += batch {
		var recs []map[string]any
		for i := off; i < min(off+batch, n); i++ {
			ts := now.Add(time.Duration(i%1000) * time.Millisecond)
			recs = append(recs, map[string]any{
				"record_id": uuid.Must(uuid.NewV7()).String(), "ts_start": ts.Format(time.RFC3339Nano), "ts_end": ts.Add(time.Duration(20+i%300) * time.Millisecond).Format(time.RFC3339Nano),
				"actor":       map[string]any{"id": fmt.Sprintf("agent-%d", i%50), "type": "agent"},
				"tool":        map[string]any{"name": tools[i%len(tools)], "server": fmt.Sprintf("mcp-%d", i%8), "version": "1.4.2", "group": "ops"},
				"policy":      map[string]any{"decision": "allow"},
				"outcome":     map[string]any{"status": "ok"},
				"mcp":         map[string]any{"method": "tools/call", "session_id": randHex(16), "request_id": fmt.Sprint(i), "transport": "http"},
				"trace":       map[string]any{"trace_id": randHex(16), "span_id": randHex(8)},
				"args_sha256": randHex(32), "result_sha256": randHex(32),
			})
		}
		b, _ := json.Marshal(recs)
		bodies = append(bodies, b)
	}
	cpu0, t0 := cpuSeconds(srv.Process.Pid), time.Now()
	var wg sync.WaitGroup
	next := make(chan []byte)
	var postErr error
	var mu sync.Mutex
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range next {
				req, _ := http.NewRequest(http.MethodPost, base+"/v1/records", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+ingestTok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != 202 {
						err = fmt.Errorf("post: %s", resp.Status)
					}
				}
				if err != nil {
					mu.Lock()
					postErr = err
					mu.Unlock()
				}
			}
		}()
	}
	for _, b := range bodies {
		next <- b
	}
	close(next)
	wg.Wait()
	if postErr != nil {
		return postErr
	}
	posted := time.Since(t0)
	var calls uint64
	for deadline := time.Now().Add(10 * time.Minute); calls < uint64(n); time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/kpi/latency?by=tool&window=1d", nil)
		req.Header.Set("Authorization", "Bearer "+queryTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		var got struct {
			Rows []struct {
				Calls uint64 `json:"calls"`
			} `json:"rows"`
		}
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		calls = 0
		for _, r := range got.Rows {
			calls += r.Calls
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d calls in the span store after 10 minutes", calls, n)
		}
	}
	all := time.Since(t0)
	cpu := cpuSeconds(srv.Process.Pid) - cpu0
	fmt.Printf("records %d: all 202 after %.2fs; all in the span store after %.2fs (%.0f records/s end to end); server CPU %.1f µs/record (ingest, log, spans)\n",
		n, posted.Seconds(), all.Seconds(), float64(n)/all.Seconds(), cpu*1e6/float64(n))
	if calls != uint64(n) {
		return fmt.Errorf("the span store counts %d calls, want %d", calls, n)
	}
	return nil
}
