package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/proofline/proofline/internal/bus"
)

// cmdDLQ reads the dead-letter stream of a running server through
// GET /v1/deadletters: the records no consumer could take, with why.
func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("%w: proofline dlq list --server URL --token T [--reason conflict|invalid|error] [--limit N] [--json]", errUsage)
	}
	fs := newFlagSet("dlq list", stderr)
	server := fs.String("server", "http://127.0.0.1:7600", "proofline server URL")
	token := fs.String("token", os.Getenv("PROOFLINE_TOKEN"), "bearer token with scope query (or PROOFLINE_TOKEN)")
	reason := fs.String("reason", "", "only dead letters of this reason: conflict, invalid or error (default: all)")
	limit := fs.Int("limit", 1000, "most dead letters to list")
	asJSON := fs.Bool("json", false, "print JSON: {\"dead_letters\":[{seq,time,consumer,reason,error,record_id}]}")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *limit < 1 {
		return fmt.Errorf("%w: --limit must be at least 1", errUsage)
	}
	// Page through the server's answers until the limit or the end.
	all := []bus.DeadLetterEntry{}
	var after uint64
	for len(all) < *limit {
		q := url.Values{"limit": {strconv.Itoa(min(1000, *limit-len(all)))}}
		if *reason != "" {
			q.Set("reason", *reason)
		}
		if after > 0 {
			q.Set("after", strconv.FormatUint(after, 10))
		}
		raw, err := apiGet(ctx, *server, "/v1/deadletters?"+q.Encode(), *token)
		if err != nil {
			return err
		}
		var page bus.DeadLetterPage
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		all = append(all, page.DeadLetters...)
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(bus.DeadLetterPage{DeadLetters: all})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "RECORD ID\tREASON\tTIME\tCONSUMER\tERROR\n")
	for _, e := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.RecordID, e.Reason, e.Time.Format(time.RFC3339), e.Consumer, e.Error)
	}
	return tw.Flush()
}
