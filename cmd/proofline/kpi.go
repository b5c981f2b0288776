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
		return fmt.Errorf("%w: proofline kpi latency|errorbudget|cost|plans|onboarding --server URL --token T [--by tool|group] [--window 7d] [--exact] [--from T --to T --step 1h] [--at T] [--json]", errUsage)
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
	window := fs.String("window", "", "window: a Go duration (36h) or days (7d); default the server's for this KPI (7d; plans 28d)")
	asJSON := fs.Bool("json", false, "print the JSON answer")
	exact := fs.Bool("exact", false, "latency: exact quantiles from every span instead of the rollup (1% relative accuracy)")
	from := fs.String("from", "", "start of the range (RFC 3339): latency's instead of a window ending now; the others' series")
	to := fs.String("to", "", "end of the range (RFC 3339; default now, or --at)")
	step := fs.String("step", "", "also a series, one point per step (whole minutes: 5m, 1h, 1d), printed as a second table")
	at := fs.String("at", "", "errorbudget, cost, plans: as they stood at this time (RFC 3339), for a past incident")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	// Each KPI gets only the parameters it takes (the API refuses
	// others). Unset, the server's default for the KPI applies, so the
	// CLI and the API answer the same question.
	q := url.Values{}
	if kind == "latency" {
		q.Set("by", *by)
	}
	if *window != "" {
		if kind != "latency" && kind != "plans" {
			return fmt.Errorf("%w: --window is not for kpi %s (its totals are as of --at; --from --to --step for a series)", errUsage, kind)
		}
		q.Set("window", *window)
	}
	if *exact {
		if kind != "latency" {
			return fmt.Errorf("%w: --exact is only for kpi latency", errUsage)
		}
		q.Set("exact", "true")
	}
	for k, v := range map[string]string{"from": *from, "to": *to, "step": *step, "at": *at} {
		if v == "" {
			continue
		}
		switch {
		case kind == "onboarding", k == "at" && kind == "latency":
			return fmt.Errorf("%w: --%s is not for kpi %s", errUsage, k, kind)
		}
		q.Set(k, v)
	}
	raw, err := apiGet(ctx, *server, "/v1/kpi/"+kind+"?"+q.Encode(), *token)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, raw)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	if err := printTable(tw, kind, raw); err != nil {
		return err
	}
	if err := printSeries(tw, kind, raw); err != nil {
		return err
	}
	return tw.Flush()
}

// printSeries renders the series of an errorbudget, cost or plans answer
// (with --step) as a second table, one row per step that has calls
// (latency's is part of its table).
func printSeries(tw io.Writer, kind string, raw []byte) error {
	switch kind {
	case "errorbudget":
		var res struct {
			Series []struct {
				Group  string `json:"group"`
				Points []struct {
					Start    time.Time `json:"start"`
					Calls    uint64    `json:"calls"`
					Bad      uint64    `json:"bad"`
					BurnRate float64   `json:"burn_rate"`
				} `json:"points"`
			} `json:"series"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		if len(res.Series) > 0 {
			fmt.Fprintf(tw, "\t\t\t\t\t\nGROUP\tstep start\tcalls\tbad\tburn rate\t\n")
		}
		for _, sr := range res.Series {
			for _, p := range sr.Points {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\t\n", sr.Group, p.Start.Format(time.RFC3339), p.Calls, p.Bad, p.BurnRate)
			}
		}
	case "cost":
		var res struct {
			Currency string `json:"currency"`
			Series   []struct {
				Start  time.Time `json:"start"`
				Calls  uint64    `json:"calls"`
				Amount float64   `json:"amount"`
			} `json:"series"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		if res.Series != nil {
			fmt.Fprintf(tw, "\t\t\t\nSTEP START\tcost (%s)\tcalls\t\n", res.Currency)
		}
		for _, p := range res.Series {
			fmt.Fprintf(tw, "%s\t%.4f\t%d\t\n", p.Start.Format(time.RFC3339), p.Amount, p.Calls)
		}
	case "plans":
		var res struct {
			Series []struct {
				Start  time.Time `json:"start"`
				Plans  uint64    `json:"plans"`
				Policy uint64    `json:"policy_blocked"`
				System uint64    `json:"system_errors"`
				Rate   float64   `json:"failed_rate"`
			} `json:"series"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		if res.Series != nil {
			fmt.Fprintf(tw, "\t\t\t\t\t\nSTEP START\tplans\tpolicy blocks\tsystem errors\tfailed\t\n")
		}
		for _, p := range res.Series {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f%%\t\n", p.Start.Format(time.RFC3339), p.Plans, p.Policy, p.System, 100*p.Rate)
		}
	}
	return nil
}

// printTable renders one KPI answer as the table an SRE reads.
func printTable(tw io.Writer, kind string, raw []byte) error {
	switch kind {
	case "latency":
		var res struct {
			By   string `json:"by"`
			Rows []struct {
				Server string  `json:"server"`
				Key    string  `json:"key"`
				Calls  uint64  `json:"calls"`
				P50    float64 `json:"p50_ms"`
				P95    float64 `json:"p95_ms"`
				P99    float64 `json:"p99_ms"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		fmt.Fprintf(tw, "%s\tcalls\tp50 ms\tp95 ms\tp99 ms\t\n", strings.ToUpper(res.By))
		for _, r := range res.Rows {
			key := r.Key
			if r.Server != "" {
				key = r.Server + "/" + r.Key // a tool is its server and name
			}
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t\n", key, r.Calls, r.P50, r.P95, r.P99)
		}
		var ser struct {
			Series []struct {
				Server string `json:"server"`
				Key    string `json:"key"`
				Points []struct {
					Start time.Time `json:"start"`
					Calls uint64    `json:"calls"`
					P50   float64   `json:"p50_ms"`
					P95   float64   `json:"p95_ms"`
					P99   float64   `json:"p99_ms"`
				} `json:"points"`
			} `json:"series"`
		}
		if err := json.Unmarshal(raw, &ser); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		if len(ser.Series) > 0 {
			fmt.Fprintf(tw, "\t\t\t\t\t\n%s\tstep start\tcalls\tp50 ms\tp95 ms\tp99 ms\t\n", strings.ToUpper(res.By))
		}
		for _, sr := range ser.Series {
			key := sr.Key
			if sr.Server != "" {
				key = sr.Server + "/" + sr.Key
			}
			for _, p := range sr.Points {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t\n", key, p.Start.Format(time.RFC3339), p.Calls, p.P50, p.P95, p.P99)
			}
		}
	case "errorbudget":
		var res struct {
			SLOs []struct {
				Group      string  `json:"group"`
				Target     float64 `json:"target"`
				LatencyMs  float64 `json:"latency_ms"`
				Burn1h     float64 `json:"burn_rate_1h"`
				Burn6h     float64 `json:"burn_rate_6h"`
				BudgetLeft float64 `json:"budget_left"`
				Calls      uint64  `json:"calls_month"`
				Bad        uint64  `json:"bad_month"`
			} `json:"slos"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		fmt.Fprintf(tw, "GROUP\ttarget\tlatency ms\tburn 1h\tburn 6h\tbudget left\tcalls (month)\tbad\t\n")
		for _, r := range res.SLOs {
			fmt.Fprintf(tw, "%s\t%.4g\t%.0f\t%.2f\t%.2f\t%.1f%%\t%d\t%d\t\n", r.Group, r.Target, r.LatencyMs, r.Burn1h, r.Burn6h, 100*r.BudgetLeft, r.Calls, r.Bad)
		}
	case "cost":
		var res struct {
			Currency  string  `json:"currency"`
			Total     float64 `json:"total"`
			Cap       float64 `json:"monthly_cap"`
			Projected float64 `json:"projected_month_end"`
			OverCap   bool    `json:"projected_over_cap"`
			Workflows []struct {
				Workflow string  `json:"workflow"`
				Cost     float64 `json:"cost"`
				Calls    uint64  `json:"calls"`
			} `json:"workflows"`
			Anomalies []struct {
				Server string  `json:"server"`
				Tool   string  `json:"tool"`
				Reason string  `json:"reason"`
				Ratio  float64 `json:"ratio"`
				Spend  float64 `json:"recent_spend"`
			} `json:"anomalies"`
			WithoutCurrency struct {
				Calls  uint64  `json:"calls"`
				Amount float64 `json:"amount"`
			} `json:"without_currency"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		fmt.Fprintf(tw, "month to date\t%.2f %s\t\nprojected month end\t%.2f %s\t\n", res.Total, res.Currency, res.Projected, res.Currency)
		if res.Cap > 0 {
			fmt.Fprintf(tw, "monthly cap\t%.2f %s (projected over cap: %v)\t\n", res.Cap, res.Currency, res.OverCap)
		}
		if u := res.WithoutCurrency; u.Calls > 0 {
			fmt.Fprintf(tw, "without a currency (not counted)\t%.2f in %d calls\t\n", u.Amount, u.Calls)
		}
		fmt.Fprintf(tw, "\t\t\nWORKFLOW\tcost\tcalls\t\n")
		for _, w := range res.Workflows {
			fmt.Fprintf(tw, "%s\t%.4f\t%d\t\n", w.Workflow, w.Cost, w.Calls)
		}
		for _, a := range res.Anomalies {
			if a.Server != "" {
				a.Tool = a.Server + "/" + a.Tool
			}
			switch a.Reason {
			case "cap_share":
				fmt.Fprintf(tw, "ANOMALY %s\tnew tool: %.2f %s in its last hour\t\t\n", a.Tool, a.Spend, res.Currency)
			case "group_baseline":
				fmt.Fprintf(tw, "ANOMALY %s\tnew tool: %.1f× its group's baseline cost per call\t\t\n", a.Tool, a.Ratio)
			default:
				fmt.Fprintf(tw, "ANOMALY %s\t%.1f× its baseline cost per call\t\t\n", a.Tool, a.Ratio)
			}
		}
	case "plans":
		var res struct {
			Weeks []struct {
				Week      time.Time `json:"week"`
				Plans     uint64    `json:"plans"`
				Policy    uint64    `json:"policy_blocked"`
				System    uint64    `json:"system_errors"`
				Rate      float64   `json:"failed_rate"`
				MTTD      float64   `json:"mean_time_to_detect_ms"`
				MTTR      float64   `json:"mean_time_to_recover_ms"`
				Recovered uint64    `json:"recovered"`
			} `json:"weeks"`
			Causes []struct {
				Status string `json:"status"`
				Code   string `json:"error_code"`
				Calls  uint64 `json:"calls"`
			} `json:"top_causes_this_month"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		fmt.Fprintf(tw, "WEEK\tplans\tpolicy blocks\tsystem errors\tfailed\tMTTD ms\tMTTR ms\t\n")
		for _, w := range res.Weeks {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f%%\t%.0f\t%.0f\t\n", w.Week.Format("2006-01-02"), w.Plans, w.Policy, w.System, 100*w.Rate, w.MTTD, w.MTTR)
		}
		fmt.Fprintf(tw, "\t\t\t\t\t\t\t\nTOP CAUSE (MONTH)\terror code\tcalls\t\t\t\t\t\n")
		for _, c := range res.Causes {
			fmt.Fprintf(tw, "%s\t%s\t%d\t\t\t\t\t\n", c.Status, c.Code, c.Calls)
		}
	case "onboarding":
		var res struct {
			Tools []struct {
				Server     string     `json:"server"`
				Tool       string     `json:"tool"`
				Registered *time.Time `json:"registered"`
				FirstSeen  time.Time  `json:"first_seen"`
				LeadHours  *float64   `json:"lead_time_hours"`
				Calls      uint64     `json:"calls"`
			} `json:"tools"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("server answer: %w", err)
		}
		fmt.Fprintf(tw, "SERVER\tTOOL\tregistered\tfirst seen\tlead time h\tcalls\t\n")
		for _, r := range res.Tools {
			lead := "no success yet"
			if r.LeadHours != nil {
				lead = fmt.Sprintf("%.2f", *r.LeadHours)
			}
			reg := "-"
			if r.Registered != nil {
				reg = r.Registered.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t\n", r.Server, r.Tool, reg, r.FirstSeen.Format(time.RFC3339), lead, r.Calls)
		}
	}
	return nil
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
