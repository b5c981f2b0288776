package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// cmdKPI queries the KPI API of a running server and prints a table (or
// the JSON answer with --json).
func cmdKPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("%w: proofline kpi latency|errorbudget|cost|plans|onboarding --server URL --token T [--by tool|group] [--window 7d] [--json]", errUsage)
	}
	kind := args[0]
	switch kind {
	case "latency", "errorbudget", "cost", "plans", "onboarding":
	default:
		return fmt.Errorf("%w: unknown KPI %q (available: latency, errorbudget, cost, plans, onboarding)", errUsage, kind)
	}
	fs := newFlagSet("kpi "+kind, stderr)
	server := fs.String("server", "http://127.0.0.1:7600", "proofline server URL")
	token := fs.String("token", os.Getenv("PROOFLINE_TOKEN"), "bearer token with scope query (or PROOFLINE_TOKEN)")
	by := fs.String("by", "tool", "tool or group")
	window := fs.String("window", "7d", "window: a Go duration (36h) or days (7d)")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	q := url.Values{"by": {*by}, "window": {*window}}
	raw, err := apiGet(ctx, *server, "/v1/kpi/"+kind+"?"+q.Encode(), *token)
	if err != nil {
		return err
	}
	if *asJSON || kind != "latency" {
		// The other reports are nested; their JSON is the table.
		return printJSON(stdout, raw)
	}
	var res struct {
		By   string `json:"by"`
		From string `json:"from"`
		To   string `json:"to"`
		Rows []struct {
			Key   string  `json:"key"`
			Calls uint64  `json:"calls"`
			P50   float64 `json:"p50_ms"`
			P95   float64 `json:"p95_ms"`
			P99   float64 `json:"p99_ms"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("server answer: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tcalls\tp50 ms\tp95 ms\tp99 ms\t\n", strings.ToUpper(res.By))
	for _, r := range res.Rows {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t\n", r.Key, r.Calls, r.P50, r.P95, r.P99)
	}
	return tw.Flush()
}

// apiGet performs an authenticated GET and returns the body of a 200.
func apiGet(ctx context.Context, server, path, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(server, "/")+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server answered %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	return raw, nil
}

func printJSON(w io.Writer, raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("server answer: %w", err)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
