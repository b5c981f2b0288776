package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proofline/proofline/internal/testutil"
)

// confServerBinary builds the minimal go-sdk server of e2e/confserver once.
var confServerBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "proofline-e2e-confserver")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "confserver")
	if out, err := exec.Command("go", "build", "-o", bin, "./confserver").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build e2e/confserver: %v\n%s", err, out)
	}
	return bin, nil
})

// httpMCP is an MCP server process serving streamable HTTP.
type httpMCP struct {
	url     string
	logPath string
	done    chan struct{}
}

// startHTTPMCP starts bin with args plus --http ADDR and waits until it
// answers HTTP.
func startHTTPMCP(t *testing.T, bin string, args ...string) *httpMCP {
	t.Helper()
	addr := freeAddr(t)
	m := &httpMCP{url: "http://" + addr, logPath: filepath.Join(t.TempDir(), filepath.Base(bin)+".log"), done: make(chan struct{})}
	logf, err := os.Create(m.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append(args, "--http", addr)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); logf.Close(); close(m.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-m.done
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(m.url)
		if err == nil {
			resp.Body.Close()
			return m
		}
		select {
		case <-m.done:
			t.Fatalf("%s exited during start-up:\n%s", bin, m.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering on %s: %v\n%s", bin, addr, err, m.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *httpMCP) logs() string {
	b, _ := os.ReadFile(m.logPath)
	return string(b)
}

// alive fails the test when the server process has exited.
func (m *httpMCP) alive(t *testing.T) {
	t.Helper()
	select {
	case <-m.done:
		t.Fatalf("the MCP server died:\n%s", m.logs())
	default:
	}
}

// scenarioDir is how the conformance suite names a scenario's results:
// server-<scenario>-<timestamp>.
var scenarioDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T[0-9-]+Z$`)

// confCheck is one check's result: its status (SUCCESS, FAILURE, …) and
// what the suite said when it failed.
type confCheck struct {
	Status, ErrorMessage string
}

// conformance runs the official MCP conformance suite's server scenarios
// against url and returns each check's result by "scenario/check", read
// from the checks.json it writes per scenario.
func conformance(t *testing.T, url string) map[string]confCheck {
	t.Helper()
	prefix, node := testutil.NPMTools(t)
	out := t.TempDir()
	cmd := exec.Command(node, filepath.Join(prefix, "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js"),
		"server", "--url", url, "--spec-version", "2025-11-25", "--output-dir", out)
	cmd.Dir = out
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(node)+":"+os.Getenv("PATH"))
	text, err := cmd.CombinedOutput()
	// It exits non-zero when a check fails; the results say which.
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("conformance: %v\n%s", err, text)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]confCheck{}
	for _, e := range entries {
		m := scenarioDir.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(out, e.Name(), "checks.json"))
		if err != nil {
			t.Fatalf("scenario %s: %v", m[1], err)
		}
		var cs []struct {
			ID, Status, ErrorMessage string
		}
		if err := json.Unmarshal(raw, &cs); err != nil {
			t.Fatalf("scenario %s: checks.json: %v", m[1], err)
		}
		for _, c := range cs {
			checks[m[1]+"/"+c.ID] = confCheck{c.Status, c.ErrorMessage}
		}
	}
	if len(checks) == 0 {
		t.Fatalf("the conformance suite reported no checks:\n%s", text)
	}
	return checks
}

// sameAsBare fails on every check that passes against the bare server and
// not against the hooked one, and returns how many passed on both.
func sameAsBare(t *testing.T, bare, hooked map[string]confCheck) int {
	t.Helper()
	var both int
	keys := make([]string, 0, len(bare))
	for k := range bare {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if bare[k].Status != "SUCCESS" {
			continue
		}
		if h := hooked[k]; h.Status != "SUCCESS" {
			t.Errorf("conformance check %s passes without the hook and not with it: %q %s", k, h.Status, h.ErrorMessage)
			continue
		}
		both++
	}
	return both
}

// TestConformanceWithTheHook runs the official MCP conformance suite
// (npm @modelcontextprotocol/conformance, spec 2025-11-25) against MCP
// servers with proofline's hook and the same servers without it: a
// minimal go-sdk server covering the suite's scenarios, and
// examples/tickets with examples/policy.yaml. Every check that passes
// without the hook must pass with it, and the hooked servers must still
// be up afterwards.
func TestConformanceWithTheHook(t *testing.T) {
	// Both servers build while proofline starts.
	go func() { _, _ = confServerBinary() }()
	go func() { _, _ = ticketsBinary() }()
	e := newMCPEnv(t)
	natsArgs := []string{"--nats", e.natsURL, "--nats-token-file", e.natsTokenFile}

	t.Run("go-sdk server", func(t *testing.T) {
		bin, err := confServerBinary()
		if err != nil {
			t.Fatal(err)
		}
		bare := conformance(t, startHTTPMCP(t, bin, "--hook=false").url)
		srv := startHTTPMCP(t, bin, append(natsArgs, "--spool", filepath.Join(t.TempDir(), "spool"))...)
		hooked := conformance(t, srv.url)
		defer srv.alive(t)
		// The bare server passes the suite (but for the scenarios it
		// leaves out), so the comparison covers every method the hook
		// wraps.
		for _, k := range []string{"tools-list/tools-list", "tools-call-simple-text/tools-call-simple-text", "tools-call-error/tools-call-error",
			"tools-call-sampling/tools-call-sampling", "resources-read-text/resources-read-text", "prompts-get-with-args/prompts-get-with-args"} {
			if bare[k].Status != "SUCCESS" {
				t.Errorf("the bare server fails %s (%+v): the comparison would prove little", k, bare[k])
			}
		}
		n := sameAsBare(t, bare, hooked)
		t.Logf("%d of %d checks pass with and without the hook", n, len(bare))
	})

	t.Run("tickets", func(t *testing.T) {
		bin, err := ticketsBinary()
		if err != nil {
			t.Fatal(err)
		}
		args := append(natsArgs, "--policy", "../examples/policy.yaml")
		bare := conformance(t, startHTTPMCP(t, bin, append(args, "--hook=false", "--spool", filepath.Join(t.TempDir(), "spool"))...).url)
		srv := startHTTPMCP(t, bin, append(args, "--spool", filepath.Join(t.TempDir(), "spool"))...)
		hooked := conformance(t, srv.url)
		defer srv.alive(t)
		for _, k := range []string{"server-initialize/server-initialize", "tools-list/tools-list", "ping/ping"} {
			if hooked[k].Status != "SUCCESS" {
				t.Errorf("tickets with the hook fails %s (%+v)", k, hooked[k])
			}
		}
		n := sameAsBare(t, bare, hooked)
		t.Logf("%d of %d checks pass with and without the hook", n, len(bare))
		if strings.Contains(srv.logs(), "panic") {
			t.Errorf("tickets logged a panic:\n%s", srv.logs())
		}
	})
}
