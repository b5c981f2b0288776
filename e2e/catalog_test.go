package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proofline/proofline/internal/testutil"
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

// TestCatalogThroughTheLog: an agent on the official TypeScript SDK lists
// examples/tickets' tools (RecordCatalog on); each tool's registration
// is a catalog record in the log, proven with `proofline verify`, and
// the server's tool catalog — GET /v1/catalog and `proofline catalog
// list` — shows each tool with its owner, group and registration, and no
// call among the spans is a catalog record.
func TestCatalogThroughTheLog(t *testing.T) {
	e := newMCPEnv(t)
	prefix, node := testutil.NPMTools(t)
	script := nodeScript(t, prefix, "tsclient.mjs")
	bin, err := ticketsBinary()
	if err != nil {
		t.Fatal(err)
	}
	srv := startHTTPMCP(t, bin, "--nats", e.natsURL, "--nats-token-file", e.natsTokenFile, "--policy", "../examples/policy.yaml",
		"--actor", "agent-7", "--spool", filepath.Join(t.TempDir(), "spool"))
	var listed map[string]tsOutcome
	runTS(t, node, nil, &listed, script, "http", srv.url)
	type version struct {
		RecordID  string `json:"record_id"`
		LeafIndex uint64 `json:"leaf_index"`
		Change    string `json:"change"`
		Input     string `json:"input_schema_sha256"`
	}
	var cat struct {
		Tools []struct {
			Server, Name, Group, Owner string
			Registered                 time.Time
			Versions                   []version
			SchemaDrift                bool `json:"schema_drift"`
		}
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, body := e.srv.get(e.queryTok, "/v1/catalog")
		return code == 200 && json.Unmarshal(body, &cat) == nil && len(cat.Tools) == 7
	}, "seven tools in the catalog")
	dir := t.TempDir()
	for _, tool := range cat.Tools {
		if tool.Server != "tickets" || tool.Owner == "" || tool.Group == "" || tool.Registered.IsZero() || len(tool.Versions) != 1 ||
			tool.Versions[0].Change != "registered" || len(tool.Versions[0].Input) != 64 || tool.SchemaDrift {
			t.Errorf("catalog entry %+v", tool)
			continue
		}
		if tool.Name != "search_tickets" {
			continue
		}
		if tool.Owner != "team-support" || tool.Group != "ticketing" {
			t.Errorf("search_tickets: owner %q group %q", tool.Owner, tool.Group)
		}
		raw := e.srv.waitProof(e.queryTok, tool.Versions[0].RecordID)
		p := filepath.Join(dir, "catalog.json")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		if stdout, stderr, code := cli(t, "verify", "--bundle", p, "--key", e.keyPath); code != 0 {
			t.Fatalf("the catalog record does not verify: exit %d\n%s%s", code, stdout, stderr)
		}
	}
	stdout, stderr, code := cli(t, "catalog", "list", "--server", e.srv.url, "--token", e.queryTok)
	if code != 0 || !strings.Contains(stdout, "search_tickets") || !strings.Contains(stdout, "team-payments") {
		t.Fatalf("catalog list: exit %d\n%s%s", code, stdout, stderr)
	}
	// The calls' spans hold no catalog record: of search_tickets, its one
	// call, and nothing else once every record is in.
	e.provenWhere("tool=search_tickets", 1, 30*time.Second)
	for _, r := range e.provenWhere("", 6, 30*time.Second) {
		if r.IsCatalog() {
			t.Errorf("a catalog record among the spans: %+v", r.CallRecord)
		}
	}
}
