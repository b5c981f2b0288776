package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/proofline/proofline/query/report"
	"github.com/proofline/proofline/query/spanstore"
)

// cmdReport writes the weekly SRE report of a running server: the KPI
// API's answers for one ISO week (totals and per-day series), the SLOs
// and cost as they stood at the week's end (or now, for the week under
// way), and the log's state, as one self-contained HTML file.
func cmdReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", stderr)
	server := fs.String("server", "http://127.0.0.1:7600", "proofline server URL")
	token := fs.String("token", os.Getenv("PROOFLINE_TOKEN"), "bearer token with scope query (or PROOFLINE_TOKEN)")
	weekS := fs.String("week", "", "ISO week, e.g. 2026-W48 (default: the last complete week)")
	out := fs.String("out", "", "the HTML file to write (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out FILE is required", errUsage)
	}
	week := report.WeekOf(time.Now().UTC().AddDate(0, 0, -7))
	if *weekS != "" {
		w, err := report.ParseWeek(*weekS)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		week = w
	}
	now := time.Now().UTC()
	if !week.From.Before(now) {
		return fmt.Errorf("%w: week %s has not started", errUsage, week.Label)
	}
	d := report.Data{Week: week, Generated: now, Server: *server}
	// A week not over yet is reported up to now, and says so: as of its
	// end, the SLOs and cost would read as a future nobody has seen.
	end := week.To
	if end.After(now) {
		end, d.Until = now, now
	}
	rng := url.Values{"from": {week.From.Format(time.RFC3339)}, "to": {end.Format(time.RFC3339Nano)}, "step": {"24h"}}
	get := func(path string, q url.Values, v any) error {
		raw, err := apiGet(ctx, *server, path+"?"+q.Encode(), *token)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	with := func(extra url.Values) url.Values {
		q := url.Values{}
		for k, v := range rng {
			q[k] = v
		}
		for k, v := range extra {
			q[k] = v
		}
		return q
	}
	var lat struct {
		Rows   []spanstore.LatencyRow    `json:"rows"`
		Series []spanstore.LatencySeries `json:"series"`
	}
	if err := get("/v1/kpi/latency", with(url.Values{"by": {"tool"}}), &lat); err != nil {
		return err
	}
	d.Latency, d.LatencyDays = lat.Rows, lat.Series
	at := url.Values{"at": {end.Format(time.RFC3339Nano)}}
	var eb struct {
		SLOs   []spanstore.BudgetRow  `json:"slos"`
		Series []spanstore.BurnSeries `json:"series"`
	}
	switch err := get("/v1/kpi/errorbudget", with(at), &eb); {
	case err == nil:
		d.Budgets, d.Burn = eb.SLOs, eb.Series
	case strings.Contains(err.Error(), "404"):
		// No SLOs configured: the report says so.
	default:
		return err
	}
	var cost struct {
		spanstore.CostReport
		Series []spanstore.CostPoint `json:"series"`
	}
	if err := get("/v1/kpi/cost", with(at), &cost); err != nil {
		return err
	}
	d.Cost, d.CostDays = &cost.CostReport, cost.Series
	var plans struct {
		spanstore.PlanReport
		Series []spanstore.PlanPoint `json:"series"`
	}
	if err := get("/v1/kpi/plans", with(url.Values{"at": at["at"], "window": {"7d"}}), &plans); err != nil {
		return err
	}
	d.Plans, d.PlanDays = &plans.PlanReport, plans.Series
	var ob struct {
		Tools []spanstore.OnboardingRow `json:"tools"`
	}
	if err := get("/v1/kpi/onboarding", url.Values{}, &ob); err != nil {
		return err
	}
	d.Onboarding = ob.Tools
	ev, err := evidenceOf(ctx, *server, *token)
	if err != nil {
		return err
	}
	d.Evidence = ev
	var buf bytes.Buffer
	if err := report.Render(&buf, d); err != nil {
		return err
	}
	if err := writeFileAtomic(*out, buf.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%s, %d bytes)\n", *out, week.Label, buf.Len())
	return nil
}

// evidenceOf is the log's latest checkpoint and the dead letters' count.
func evidenceOf(ctx context.Context, server, token string) (report.Evidence, error) {
	var ev report.Evidence
	raw, err := apiGet(ctx, server, "/checkpoint", token)
	if err != nil {
		return ev, fmt.Errorf("/checkpoint: %w", err)
	}
	ev.Checkpoint = string(raw)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	if sc.Scan() {
		ev.Origin = sc.Text()
	}
	if sc.Scan() {
		ev.TreeSize, _ = strconv.ParseUint(sc.Text(), 10, 64)
	}
	var dl struct {
		DeadLetters []json.RawMessage `json:"dead_letters"`
		Next        uint64            `json:"next"`
	}
	raw, err = apiGet(ctx, server, "/v1/deadletters?limit=1000", token)
	if err != nil {
		return ev, fmt.Errorf("/v1/deadletters: %w", err)
	}
	if err := json.Unmarshal(raw, &dl); err != nil {
		return ev, fmt.Errorf("/v1/deadletters: %w", err)
	}
	ev.DeadLetters, ev.DeadLettersMore = len(dl.DeadLetters), dl.Next != 0
	return ev, nil
}

// writeFileAtomic writes a file whole or not at all, durably (temp file
// beside it, fsync, mode 0644, rename): a report or an archive index half
// written over the last one is worse than either.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
