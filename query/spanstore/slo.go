package spanstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"gopkg.in/yaml.v3"
)

// SLO is a tool group's objective: the share of calls that must be good,
// where a good call succeeded within the latency objective. Calls blocked
// by policy are not counted either way: a block is the control plane
// working, not the tool failing.
type SLO struct {
	Group     string  `yaml:"group" json:"group"`
	Target    float64 `yaml:"target" json:"target"`
	LatencyMs float64 `yaml:"latency_ms" json:"latency_ms"`
}

// SLOFile is the --slo configuration file.
type SLOFile struct {
	SLOs []SLO `yaml:"slos"`
}

// LoadSLOs reads and checks an SLO file (YAML).
func LoadSLOs(path string) ([]SLO, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("slo file: %w", err)
	}
	var f SLOFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("slo file %s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, s := range f.SLOs {
		switch {
		case s.Group == "":
			return nil, fmt.Errorf("slo file %s: slos[%d]: group is required", path, i)
		case s.Target <= 0 || s.Target >= 1:
			return nil, fmt.Errorf("slo file %s: slos[%d] (%s): target %v must be between 0 and 1, e.g. 0.99", path, i, s.Group, s.Target)
		case s.LatencyMs <= 0:
			return nil, fmt.Errorf("slo file %s: slos[%d] (%s): latency_ms must be positive", path, i, s.Group)
		case seen[s.Group]:
			return nil, fmt.Errorf("slo file %s: group %s twice", path, s.Group)
		}
		seen[s.Group] = true
	}
	return f.SLOs, nil
}

// BudgetRow is one SLO's error budget.
type BudgetRow struct {
	SLO
	// BurnRate1h and BurnRate6h are the bad-call ratio over the window
	// divided by the allowed ratio (1 − target): 1 spends the budget
	// exactly over the period, above 1 faster.
	BurnRate1h float64 `json:"burn_rate_1h"`
	BurnRate6h float64 `json:"burn_rate_6h"`
	// BudgetLeft is the share of this month's error budget not yet spent
	// (negative when overspent).
	BudgetLeft float64 `json:"budget_left"`
	CallsMonth uint64  `json:"calls_month"`
	BadMonth   uint64  `json:"bad_month"`
}

// ErrNoSLOs means no SLO file was configured.
var ErrNoSLOs = errors.New("no SLOs configured (serve --slo FILE)")

// ErrorBudget computes burn rates and budget left for each SLO at now.
func (s *Store) ErrorBudget(ctx context.Context, slos []SLO, now time.Time) ([]BudgetRow, error) {
	if len(slos) == 0 {
		return nil, ErrNoSLOs
	}
	now = now.UTC()
	m0 := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	out := make([]BudgetRow, 0, len(slos))
	for _, slo := range slos {
		p := timeParams(clickhouse.Parameters{"grp": slo.Group, "lat": fmt.Sprint(uint64(slo.LatencyMs * 1000))},
			map[string]time.Time{"m0": m0, "h1": now.Add(-time.Hour), "h6": now.Add(-6 * time.Hour), "now": now})
		q := `SELECT
			countIf(ts_start >= {h1:DateTime64(9, 'UTC')}), countIf(bad AND ts_start >= {h1:DateTime64(9, 'UTC')}),
			countIf(ts_start >= {h6:DateTime64(9, 'UTC')}), countIf(bad AND ts_start >= {h6:DateTime64(9, 'UTC')}),
			countIf(ts_start >= {m0:DateTime64(9, 'UTC')}), countIf(bad AND ts_start >= {m0:DateTime64(9, 'UTC')})
		FROM (
			SELECT ts_start, NOT (outcome_status = 'ok' AND latency_us <= {lat:UInt64}) AS bad
			FROM {{spans}} FINAL
			WHERE tool_group = {grp:String} AND outcome_status != 'policy_blocked'
				AND ts_start >= least({m0:DateTime64(9, 'UTC')}, {h6:DateTime64(9, 'UTC')}) AND ts_start < {now:DateTime64(9, 'UTC')})`
		var n1, b1, n6, b6 uint64
		r := BudgetRow{SLO: slo}
		if err := s.queryRow(clickhouse.Context(ctx, clickhouse.WithParameters(p)), q).Scan(&n1, &b1, &n6, &b6, &r.CallsMonth, &r.BadMonth); err != nil {
			return nil, fmt.Errorf("error budget %s: %w", slo.Group, err)
		}
		allowed := 1 - slo.Target
		r.BurnRate1h = ratio(b1, n1) / allowed
		r.BurnRate6h = ratio(b6, n6) / allowed
		r.BudgetLeft = 1 - ratio(r.BadMonth, r.CallsMonth)/allowed
		out = append(out, r)
	}
	return out, nil
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
