// Package e2e drives the real proofline binary: every test here starts
// `proofline serve` as a separate process against real NATS JetStream and
// a real tessera log, exactly as a user would, and checks what users rely
// on through the HTTP API and the CLI.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is the proofline binary built once for the whole package.
var binary string

// builtNATS is a nats-server built from the version go.mod pins (the one
// proofline embeds): the external NATS tests run against it as well as
// against Debian's older package.
var builtNATS string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "proofline-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binary = filepath.Join(dir, "proofline")
	args := []string{"build", "-o", binary}
	if os.Getenv("PROOFLINE_E2E_RACE") == "1" {
		// A race-enabled server: its DATA RACE reports make the server
		// exit non-zero and show up in the test's server log.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/proofline")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building proofline:", err)
		os.Exit(2)
	}
	builtNATS = filepath.Join(dir, "nats-server")
	build = exec.Command("go", "build", "-o", builtNATS, "github.com/nats-io/nats-server/v2")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building nats-server:", err)
		os.Exit(2)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running `proofline serve` process.
type server struct {
	t       *testing.T
	data    string
	url     string
	args    []string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	// degraded: the server is expected to run with a role down, so start
	// waits for /readyz to answer at all, not for 200.
	degraded bool
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs proofline serve on a fresh port with data in dir.
func startServer(t *testing.T, data string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, data: data, args: extra}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// startDegraded is startServer for a server that is to run with a role
// down (e.g. its ClickHouse unreachable): it returns once /readyz answers,
// 200 or 503.
func startDegraded(t *testing.T, data string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, data: data, args: extra, degraded: true}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	addr := freeAddr(s.t)
	s.url = "http://" + addr
	args := append([]string{"serve", "--data", s.data, "--listen", addr, "--origin", "e2e.proofline.test/log", "--log-level", "debug"}, s.args...)
	s.cmd = exec.Command(binary, args...)
	s.logPath = filepath.Join(s.t.TempDir(), "server.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); logf.Close(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.t.Fatalf("proofline serve exited during start-up:\n%s", s.logs())
		default:
		}
		resp, err := http.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || (s.degraded && resp.StatusCode == http.StatusServiceUnavailable) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("proofline serve not ready after 60s:\n%s", s.logs())
}

func (s *server) logs() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 20000 {
		b = b[len(b)-20000:]
	}
	return string(b)
}

// kill9 kills the server the hard way: no shutdown, no final checkpoint.
func (s *server) kill9() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Signal(syscall.SIGQUIT) // goroutine dump into the log
		time.Sleep(time.Second)
		s.kill9()
		s.t.Errorf("proofline serve did not stop on SIGTERM within 20s:\n%s", s.logs())
	}
}

// cli runs the proofline binary and returns stdout, stderr and exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run proofline %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (s *server) token(principal, scope, ttl string) string {
	s.t.Helper()
	out, errOut, code := cli(s.t, "token", "issue", "--data", s.data, "--principal", principal, "--scope", scope, "--ttl", ttl)
	if code != 0 {
		s.t.Fatalf("token issue: exit %d: %s", code, errOut)
	}
	return strings.TrimSpace(out)
}

type result struct {
	Index     int    `json:"index"`
	RecordID  string `json:"record_id"`
	Status    string `json:"status"`
	StreamSeq uint64 `json:"stream_seq"`
	Errors    []struct {
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"errors"`
}

type postResponse struct {
	Accepted   int      `json:"accepted"`
	Duplicates int      `json:"duplicates"`
	Rejected   int      `json:"rejected"`
	Results    []result `json:"results"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// post sends body to /v1/records and decodes the answer.
func (s *server) post(token string, body []byte, headers map[string]string) (int, http.Header, postResponse, error) {
	req, err := http.NewRequest(http.MethodPost, s.url+"/v1/records", bytes.NewReader(body))
	if err != nil {
		return 0, nil, postResponse{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, postResponse{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, postResponse{}, err
	}
	var pr postResponse
	if err := json.Unmarshal(raw, &pr); err != nil {
		return resp.StatusCode, resp.Header, pr, fmt.Errorf("response %q: %w", raw, err)
	}
	return resp.StatusCode, resp.Header, pr, nil
}

func (s *server) get(token, path string) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// waitProof polls /v1/proof/{id} until the record is provable.
func (s *server) waitProof(token, id string) []byte {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := s.get(token, "/v1/proof/"+id)
		if code == http.StatusOK {
			return body
		}
		if code != http.StatusNotFound && code != http.StatusTooEarly {
			s.t.Fatalf("proof %s: %d %s", id, code, body)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("record %s not provable after 60s (last %d %s)\n%s", id, code, body, s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// record is a valid call record with the given id.
func record(id string) map[string]any {
	return map[string]any{
		"record_id":   id,
		"ts_start":    "2026-11-25T10:00:00.000000001Z",
		"ts_end":      "2026-11-25T10:00:00.250Z",
		"actor":       map[string]any{"id": "agent-7", "type": "agent", "on_behalf_of": "alice@example.com"},
		"tool":        map[string]any{"name": "search_tickets", "server": "jira-mcp", "version": "1.4.0", "group": "ticketing"},
		"mcp":         map[string]any{"method": "tools/call", "session_id": "s-1", "request_id": "42", "transport": "http"},
		"trace":       map[string]any{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"},
		"policy":      map[string]any{"decision": "allow", "rule": "default-allow"},
		"outcome":     map[string]any{"status": "ok"},
		"args_sha256": strings.Repeat("ab", 32),
		"cost":        map[string]any{"amount": 0.0125, "currency": "USD", "tokens_in": 120, "tokens_out": 48},
		"workflow_id": "wf-billing",
		"attributes":  map[string]any{"env": "test"},
	}
}

func jsonArray(t *testing.T, recs ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ndjson(t *testing.T, recs ...map[string]any) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return out
}

func records(idList []string) []map[string]any {
	out := make([]map[string]any, len(idList))
	for i, id := range idList {
		out[i] = record(id)
	}
	return out
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
