package e2e

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestCatalogCheckExamplesTickets: `proofline catalog check` lists
// examples/tickets' tools as an agent's host would — over stdio, the
// server started by the command, and over streamable HTTP — and finds
// every tool's schema compiling as JSON Schema 2020-12, the tool and
// each parameter described, no example failing. (The checks' failures
// are driven in ingest/mcphook/discovery's tests.)
func TestCatalogCheckExamplesTickets(t *testing.T) {
	bin, err := ticketsBinary()
	if err != nil {
		t.Fatal(err)
	}
	// No NATS is needed to list tools: the outbox spools.
	args := []string{"--nats", "nats://127.0.0.1:1", "--actor", "agent-7"}
	stdout, stderr, code := cli(t, append([]string{"catalog", "check", "--json", "--", bin, "--spool", filepath.Join(t.TempDir(), "spool")}, args...)...)
	var rep struct {
		Tools    int               `json:"tools"`
		Problems []json.RawMessage `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 || rep.Tools != 7 || len(rep.Problems) != 0 {
		t.Fatalf("catalog check over stdio: exit %d, %s (%v)\n%s", code, stdout, err, stderr)
	}
	srv := startHTTPMCP(t, bin, append(args, "--spool", filepath.Join(t.TempDir(), "spool2"))...)
	if stdout, stderr, code := cli(t, "catalog", "check", "--url", srv.url); code != 0 || stdout != "7 tools, 0 problems\n" {
		t.Fatalf("catalog check over HTTP: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, _, code := cli(t, "catalog", "check", "--url", "http://127.0.0.1:1/mcp", "--timeout", "2s"); code != 2 {
		t.Fatalf("an unreachable server: exit %d, want 2", code)
	}
}
