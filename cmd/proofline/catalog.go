package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/proofline/proofline/ingest/mcphook/discovery"
)

// cmdCatalog runs catalog subcommands. check connects to an MCP server —
// a command it starts (stdio) or a streamable HTTP URL — lists its tools
// as an agent's host would, and checks them (ingest/mcphook/discovery):
// exit 0 when every tool passes, 1 when one does not, 2 when the server
// cannot be reached.
func cmdCatalog(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) > 0 && args[0] == "list" {
		return exitOK, catalogList(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "check" {
		return exitUsage, fmt.Errorf("%w: proofline catalog list --server URL --token T [--json] | proofline catalog check (--url URL | -- COMMAND [ARGS...])", errUsage)
	}
	fs := newFlagSet("catalog check", stderr)
	url := fs.String("url", "", "the server's streamable HTTP endpoint")
	token := fs.String("token", "", "bearer token for --url")
	asJSON := fs.Bool("json", false, "print the problems as JSON")
	timeout := fs.Duration("timeout", 30*time.Second, "give up connecting and listing after this long")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, err
		}
		return exitUsage, fmt.Errorf("%w: %v", errUsage, err)
	}
	var transport mcp.Transport
	switch {
	case *url != "" && fs.NArg() == 0:
		hc := &http.Client{Timeout: *timeout}
		if *token != "" {
			hc.Transport = bearer{token: *token, next: http.DefaultTransport}
		}
		transport = &mcp.StreamableClientTransport{Endpoint: *url, HTTPClient: hc}
	case *url == "" && fs.NArg() > 0:
		cmd := exec.CommandContext(ctx, fs.Arg(0), fs.Args()[1:]...)
		cmd.Stderr = os.Stderr // the server's own log, for whoever runs the check
		transport = &mcp.CommandTransport{Command: cmd}
	default:
		return exitUsage, fmt.Errorf("%w: give either --url URL or -- COMMAND [ARGS...]", errUsage)
	}
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "proofline-catalog-check", Version: version}, nil).Connect(cctx, transport, nil)
	if err != nil {
		return exitUsage, fmt.Errorf("connect: %w", err)
	}
	defer cs.Close()
	tools, err := discovery.Tools(cctx, cs)
	if err != nil {
		return exitUsage, err
	}
	problems := discovery.Check(tools)
	if *asJSON {
		if problems == nil {
			problems = []discovery.Problem{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"tools": len(tools), "problems": problems})
	} else {
		for _, p := range problems {
			fmt.Fprintln(stdout, "FAIL", p.String())
		}
		fmt.Fprintf(stdout, "%d tools, %d problems\n", len(tools), len(problems))
	}
	if len(problems) > 0 {
		return exitMismatch, nil
	}
	return exitOK, nil
}

// bearer adds a bearer token to each request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// catalogList prints the tool catalog of a running server: each tool
// with its owner, registration, current version, how many versions, and
// whether its schema drifted.
func catalogList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("catalog list", stderr)
	server := fs.String("server", "http://127.0.0.1:7600", "proofline server URL")
	token := fs.String("token", os.Getenv("PROOFLINE_TOKEN"), "bearer token with scope query (or PROOFLINE_TOKEN)")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	raw, err := apiGet(ctx, *server, "/v1/catalog", *token)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, raw)
	}
	var rep struct {
		Tools []struct {
			Server, Name, Group, Owner string
			Registered                 time.Time
			Removed                    bool
			Current                    struct{ Version string }
			Versions                   []json.RawMessage
			SchemaDrift                bool `json:"schema_drift"`
		}
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("catalog answer: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tTOOL\tGROUP\tOWNER\tREGISTERED\tVERSION\tVERSIONS\tNOTE")
	for _, t := range rep.Tools {
		note := ""
		switch {
		case t.SchemaDrift:
			note = "schema drift: input schema changed without a version change"
		case t.Removed:
			note = "removed"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.Server, t.Name, t.Group, t.Owner, t.Registered.Format(time.RFC3339), t.Current.Version, len(t.Versions), note)
	}
	return tw.Flush()
}
