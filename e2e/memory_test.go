package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// vmHWM is the peak resident set size of process pid, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// zstdBomb is a small zstd body that decompresses to n spaces, with an
// 8 MiB window (what zstd -19 uses), so that each decoder holds as much
// as a legitimate one may.
func zstdBomb(t *testing.T, n int64) []byte {
	t.Helper()
	var out bytes.Buffer
	enc, err := zstd.NewWriter(&out, zstd.WithWindowSize(8<<20), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(enc, io.LimitReader(spaces{}, n)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// TestDecodeBudgetBoundsMemory: 64 concurrent zstd bombs from one token
// (a few KiB each, 256 MiB decompressed) are refused — 413 once a body
// passes --max-body, or 503 with Retry-After while the decode budget is
// taken — and the server's peak RSS grows by no more than twice the budget
// plus 32 MiB. Twice: the budget bounds the bytes decoding holds, and Go's
// collector lets the heap grow to twice what is live before it collects
// (GOGC=100). The 32 MiB are the 64 connections' goroutines and net/http
// buffers. Without the budget each bomb held its 16 MiB body and its
// decoder's window at once (~21 MB a request was measured). Valid
// requests succeed afterwards.
func TestDecodeBudgetBoundsMemory(t *testing.T) {
	const budget = 64 << 20
	s := startServer(t, t.TempDir(), "--roles", "ingest", "--decode-budget", strconv.Itoa(budget))
	tok := s.token("gw-bombs", "ingest", "1h")
	if code, _, pr, err := s.post(tok, ndjson(t, records(ids("mem-warm", 100))...), nil); err != nil || code != http.StatusAccepted {
		t.Fatalf("warm-up: %d %+v %v", code, pr, err)
	}
	bomb := zstdBomb(t, 256<<20)
	if len(bomb) > 64<<10 {
		t.Fatalf("the bomb is %d bytes compressed; want a small one", len(bomb))
	}
	before := vmHWM(t, s.cmd.Process.Pid)

	const bombs = 64
	codes := make([]int, bombs)
	retryAfter := make([]string, bombs)
	var wg sync.WaitGroup
	for i := range bombs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/records", bytes.NewReader(bomb))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Encoding", "zstd")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("bomb %d: %v", i, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i], retryAfter[i] = resp.StatusCode, resp.Header.Get("Retry-After")
		}()
	}
	wg.Wait()
	refused := map[int]int{}
	for i, c := range codes {
		refused[c]++
		switch c {
		case http.StatusRequestEntityTooLarge:
		case http.StatusServiceUnavailable:
			if retryAfter[i] == "" {
				t.Errorf("bomb %d: 503 without Retry-After", i)
			}
		default:
			t.Errorf("bomb %d: %d, want 413 or 503", i, c)
		}
	}
	after := vmHWM(t, s.cmd.Process.Pid)
	t.Logf("answers %v; peak RSS %d MiB before the bombs, %d MiB after (budget %d MiB)", refused, before>>20, after>>20, budget>>20)
	if limit := before + 2*budget + 32<<20; after > limit {
		t.Fatalf("peak RSS grew from %d MiB to %d MiB under %d bombs, over the %d MiB bound (before + 2 × budget + 32 MiB)", before>>20, after>>20, bombs, limit>>20)
	}
	// The server still takes valid records, plain and compressed.
	if code, _, pr, err := s.post(tok, ndjson(t, records(ids("mem-after", 100))...), nil); err != nil || code != http.StatusAccepted || pr.Accepted != 100 {
		t.Fatalf("valid request after the bombs: %d %+v %v", code, pr, err)
	}
	if code, _, pr, err := s.post(tok, zst(t, ndjson(t, records(ids("mem-after-zstd", 100))...)), map[string]string{"Content-Encoding": "zstd"}); err != nil || code != http.StatusAccepted || pr.Accepted != 100 {
		t.Fatalf("valid zstd request after the bombs: %d %+v %v", code, pr, err)
	}
}
