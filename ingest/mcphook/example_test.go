package mcphook_test

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/ingest/mcphook"
	"github.com/proofline/proofline/ingest/mcphook/policy"
	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
)

// Example is the README's "Adding it to a server" snippet, compiled (not
// run: it needs a proofline to connect to). TestREADMEHookSnippet keeps
// the two identical.
func Example() {
	ctx := context.Background()
	server := mcp.NewServer(&mcp.Implementation{Name: "tickets", Version: "1.0.0"}, nil)
	client := mcp.NewClient(&mcp.Implementation{Name: "agent-7", Version: "1.0.0"}, nil)

	// README begin
	token, _ := os.ReadFile("/etc/tickets/nats.token") // proofline serve --nats-listen writes DATA/keys/nats.token
	nc, _ := nats.Connect("nats://proofline-host:4222", nats.Token(strings.TrimSpace(string(token))))
	js, _ := jetstream.New(nc)
	ob, _ := outbox.Open(outbox.Config{Publisher: publish.NewPublisher(js), SpoolPath: "/var/lib/tickets/spool"})
	pol, _ := policy.Load("policy.yaml")
	hook, _ := mcphook.New(mcphook.Config{
		Outbox: ob, Policy: pol, Principal: "mcphook:tickets",
		Server: mcphook.ServerInfo{Name: "tickets", Version: "1.0.0"},
		Tools:  map[string]mcphook.ToolConfig{"create_ticket": {Group: "ticketing", Write: true}},
		Limits: mcphook.Limits{PrincipalRate: 5, PrincipalBurst: 10, DefaultMaxConcurrent: 8, DefaultTimeout: 30 * time.Second},
	})
	defer ob.Close(ctx)
	defer hook.Close(ctx)                                  // before the outbox
	server.AddReceivingMiddleware(hook.ServerMiddleware()) // server side
	client.AddSendingMiddleware(hook.ClientMiddleware(     // or on the agent's client
		mcphook.Identity{ID: "agent-7", Type: "agent", Scopes: []string{"tickets:read"}}))
	// README end
}

// TestREADMEHookSnippet: the README's hook snippet is Example's body, line
// for line (indentation and alignment aside), so the README cannot show
// code that does not compile.
func TestREADMEHookSnippet(t *testing.T) {
	readme := section(t, "../../README.md", "## MCP servers and agents: the hook", "```go", "```")
	example := section(t, "example_test.go", "func Example() {", "\t// README begin", "\t// README end")
	if len(readme) == 0 || strings.Join(readme, "\n") != strings.Join(example, "\n") {
		t.Fatalf("the README's hook snippet differs from Example in example_test.go:\nREADME:\n%s\n\nExample:\n%s",
			strings.Join(readme, "\n"), strings.Join(example, "\n"))
	}
}

// section returns the lines of path between the first start line and the
// next end line after the heading, each with its whitespace runs made one
// space (gofmt aligns comments with spaces the README need not copy).
func section(t *testing.T, path, heading, start, end string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	state := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case state == 0 && strings.HasPrefix(line, heading):
			state = 1
		case state == 1 && line == start:
			state = 2
		case state == 2 && line == end:
			return out
		case state == 2:
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	t.Fatalf("%s: no %q … %q after %q", path, start, end, heading)
	return nil
}
