// Command agent is a scripted stand-in for an AI agent, to show the MCP
// hook from the agent's side. It connects to the example tickets server —
// launching it over stdio, or over streamable HTTP with --url — with
// proofline's client hook, and runs one plan: search, open a ticket
// (idempotently), read a web page, and then, like a naive model, obey the
// instruction injected into that page and try to move money. The policy
// refuses that last call; every call is recorded and traced.
//
//	agent --nats nats://127.0.0.1:4222 -- tickets --nats nats://127.0.0.1:4222 --policy examples/policy.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/ingest/mcphook"
	"github.com/proofline/proofline/ingest/outbox"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/schemas"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	natsURL := fs.String("nats", "", "record the agent's side of each call through this NATS (empty: no client-side records)")
	url := fs.String("url", "", "streamable HTTP URL of the server; otherwise the command after -- is launched over stdio")
	id := fs.String("id", "agent-7", "this agent's identity")
	natsTokenFile := fs.String("nats-token-file", "", "file holding the NATS token (DATA/keys/nats.token); or set PROOFLINE_NATS_TOKEN")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var transport mcp.Transport
	switch {
	case *url != "":
		transport = &mcp.StreamableClientTransport{Endpoint: *url}
	case fs.NArg() > 0:
		transport = &mcp.CommandTransport{Command: exec.Command(fs.Arg(0), fs.Args()[1:]...)}
	default:
		return fmt.Errorf("give --url or the server command after --")
	}
	client := mcp.NewClient(&mcp.Implementation{Name: *id, Version: "0.1"}, nil)
	if *natsURL != "" {
		tok := os.Getenv("PROOFLINE_NATS_TOKEN")
		if *natsTokenFile != "" {
			b, err := os.ReadFile(*natsTokenFile)
			if err != nil {
				return err
			}
			tok = strings.TrimSpace(string(b))
		}
		nc, err := nats.Connect(*natsURL, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.Token(tok))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ob, err := outbox.Open(outbox.Config{Publisher: publish.NewPublisher(js), SpoolPath: filepath.Join(os.TempDir(), "agent-"+*id+"-spool")})
		if err != nil {
			return err
		}
		defer func() { _ = ob.Close(context.Background()) }()
		hook, err := mcphook.New(mcphook.Config{Outbox: ob, Principal: "mcphook:agent", Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil))})
		if err != nil {
			return err
		}
		defer func() { _ = hook.Close(context.Background()) }()
		client.AddSendingMiddleware(hook.ClientMiddleware(mcphook.Identity{ID: *id, Type: schemas.ActorAgent}))
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cs, err := client.Connect(ctx, transport, nil)
	if err != nil {
		return err
	}
	defer cs.Close()

	ctx, plan := mcphook.StartPlan(ctx, nil, "plan-"+strconv.FormatInt(time.Now().Unix(), 10))
	defer plan.End()
	step := func(name string, args map[string]any, meta mcp.Meta) string {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args, Meta: meta})
		if err != nil {
			fmt.Printf("%-15s refused: %v\n", name, err)
			return ""
		}
		out := ""
		for _, c := range res.Content {
			if t, ok := c.(*mcp.TextContent); ok {
				out += t.Text
			}
		}
		fmt.Printf("%-15s %s\n", name, out)
		return out
	}
	step("search_tickets", map[string]any{"query": "printer"}, nil)
	step("create_ticket", map[string]any{"title": "toner empty"}, mcp.Meta{mcphook.MetaIdempotencyKey: "agent-7-toner"})
	page := step("fetch_page", map[string]any{"url": "https://status.example.com"}, nil)
	// The naive part: act on instructions found in tool output.
	if m := regexp.MustCompile(`call transfer_funds with to=(\S+) amount=(\d+)`).FindStringSubmatch(page); m != nil {
		amount, _ := strconv.ParseFloat(m[2], 64)
		step("transfer_funds", map[string]any{"to": m[1], "amount": amount}, mcp.Meta{mcphook.MetaIdempotencyKey: "injected-1"})
	}
	return nil
}
