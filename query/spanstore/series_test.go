package spanstore

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestLatencySeries: latency per tool per step, from the per-minute
// rollup (steps of minutes), the per-hour rollup (steps of hours) and
// every span (exact), against answers made up front: each step's calls
// and, with one latency per step, its quantiles.
func TestLatencySeries(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	base := time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)
	var spans []Span
	leaf := uint64(0)
	add := func(tool string, at time.Time, lat time.Duration, n int) {
		for range n {
			spans = append(spans, span(fmt.Sprintf("s-%d", leaf), tool, "g", at, lat, leaf))
			leaf++
		}
	}
	// Tool a: minutes 0–1 at 10 ms, 2–3 at 40 ms, 4–5 at 90 ms, 4 calls a minute.
	for m, lat := range []time.Duration{10, 10, 40, 40, 90, 90} {
		add("a", base.Add(time.Duration(m)*time.Minute+time.Second), lat*time.Millisecond, 4)
	}
	// Tool b: 2 calls in hour 0, 3 in hour 1, 1 in hour 2, 5 ms each.
	for h, n := range []int{2, 3, 1} {
		add("b", base.Add(time.Duration(h)*time.Hour+30*time.Minute), 5*time.Millisecond, n)
	}
	if err := s.Insert(ctx, spans); err != nil {
		t.Fatal(err)
	}
	type point struct {
		start    time.Time
		calls    uint64
		p50, p99 float64
	}
	check := func(what string, got []LatencySeries, want map[string][]point) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d series, want %d: %+v", what, len(got), len(want), got)
		}
		for _, ser := range got {
			w := want[ser.Key]
			if len(ser.Points) != len(w) {
				t.Fatalf("%s %s: points %+v, want %+v", what, ser.Key, ser.Points, w)
			}
			for i, p := range ser.Points {
				if !p.Start.Equal(w[i].start) || p.Calls != w[i].calls || math.Abs(p.P50ms-w[i].p50) > w[i].p50*LatencyAccuracy || math.Abs(p.P99ms-w[i].p99) > w[i].p99*LatencyAccuracy {
					t.Errorf("%s %s point %d: %+v, want %+v", what, ser.Key, i, p, w[i])
				}
			}
		}
	}
	// Steps of 2 minutes over the first 6 minutes, asked unaligned.
	ser, err := AlignSeries(base.Add(20*time.Second), base.Add(5*time.Minute+10*time.Second), 2*time.Minute)
	if err != nil || !ser.From.Equal(base) || !ser.To.Equal(base.Add(6*time.Minute)) {
		t.Fatalf("aligned %+v %v", ser, err)
	}
	want := map[string][]point{"a": {{base, 8, 10, 10}, {base.Add(2 * time.Minute), 8, 40, 40}, {base.Add(4 * time.Minute), 8, 90, 90}}}
	for _, exact := range []bool{false, true} {
		got, err := s.LatencySeries(ctx, "tool", ser, exact)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("2m exact=%v", exact), got, want)
	}
	// Steps of an hour over three hours: the hourly rollup.
	ser, _ = AlignSeries(base, base.Add(3*time.Hour), time.Hour)
	got, err := s.LatencySeries(ctx, "tool", ser, false)
	if err != nil {
		t.Fatal(err)
	}
	check("1h", got, map[string][]point{
		"a": {{base, 24, 40, 90}},
		"b": {{base, 2, 5, 5}, {base.Add(time.Hour), 3, 5, 5}, {base.Add(2 * time.Hour), 1, 5, 5}},
	})
	for _, tc := range []struct {
		from, to time.Time
		step     time.Duration
	}{
		{base, base.Add(time.Hour), 90 * time.Second},
		{base, base.Add(time.Hour), 0},
		{base.Add(time.Hour), base, time.Minute},
		{base, base.Add(10 * 24 * time.Hour), time.Minute},
	} {
		if _, err := AlignSeries(tc.from, tc.to, tc.step); err == nil {
			t.Errorf("AlignSeries(%s, %s, %s) accepted", tc.from, tc.to, tc.step)
		}
	}
}

// TestLatencyPerServerWithoutPolicyBlocks: a tool is its server and
// name — search on jira (40 ms) and on confluence (300 ms) are two rows,
// not one p99 of both — and calls refused by policy (the hook's 0.2 ms)
// are not in a tool's latency, from the rollups or exact.
func TestLatencyPerServerWithoutPolicyBlocks(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	base := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	var spans []Span
	add := func(server string, lat time.Duration, n int, status string) {
		for range n {
			sp := span(fmt.Sprintf("l-%d", len(spans)), "search", "g", base.Add(time.Duration(len(spans))*time.Second), lat, uint64(len(spans)))
			sp.Record.Tool.Server = server
			if status != "" {
				sp.Record.Outcome.Status = status
			}
			spans = append(spans, sp)
		}
	}
	add("jira", 40*time.Millisecond, 10, "")
	add("confluence", 300*time.Millisecond, 5, "")
	add("jira", 200*time.Microsecond, 20, "policy_blocked")
	if err := s.Insert(ctx, spans); err != nil {
		t.Fatal(err)
	}
	for _, exact := range []bool{false, true} {
		rows, err := s.Latency(ctx, LatencyQuery{By: "tool", From: base, To: base.Add(time.Hour), Exact: exact})
		if err != nil || len(rows) != 2 {
			t.Fatalf("exact=%v: %+v %v", exact, rows, err)
		}
		for _, r := range rows {
			want := map[string]struct {
				calls uint64
				ms    float64
			}{"jira": {10, 40}, "confluence": {5, 300}}[r.Server]
			if r.Key != "search" || r.Calls != want.calls || math.Abs(r.P99ms-want.ms) > want.ms*LatencyAccuracy || math.Abs(r.P50ms-want.ms) > want.ms*LatencyAccuracy {
				t.Errorf("exact=%v: row %+v, want %d calls at %v ms", exact, r, want.calls, want.ms)
			}
		}
	}
	groups, err := s.Latency(ctx, LatencyQuery{By: "group", From: base, To: base.Add(time.Hour)})
	if err != nil || len(groups) != 1 || groups[0].Calls != 15 || groups[0].Server != "" {
		t.Fatalf("by group: %+v %v", groups, err)
	}
}

// TestHistogramQuantilesSQL: the engine reads the same quantiles off a
// histogram as histogramQuantiles does here, sparse or dense, small or
// large. The histogram is made as the store makes every one it keeps or
// sums (sumMap over buckets arriving in any order); TestStoredHistograms-
// AreInBucketOrder checks the rollups hold nothing else.
func TestHistogramQuantilesSQL(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	r := rand.New(rand.NewPCG(7, 13))
	for i := 0; i < 40; i++ {
		hist := map[uint16]uint64{}
		for range 1 + r.IntN(300) {
			hist[uint16(r.IntN(900))] += 1 + uint64(r.IntN([]int{1, 5, 1000}[i%3]))
		}
		var buckets []string
		var n uint64
		for k, v := range hist { // map order: not sorted
			buckets = append(buckets, fmt.Sprintf("map(toUInt16(%d), toUInt64(%d))", k, v))
			n += v
		}
		q := `SELECT ` + histogramQuantilesSQL("h", "n") + ` FROM (SELECT sumMap(m) AS h, toUInt64(` + fmt.Sprint(n) + `) AS n FROM (SELECT arrayJoin([` +
			strings.Join(buckets, ",") + `]) AS m))`
		var got [3]float64
		if err := s.queryRow(ctx, q).Scan(&got[0], &got[1], &got[2]); err != nil {
			t.Fatal(err)
		}
		want := histogramQuantiles(hist, 0.5, 0.95, 0.99)
		for j := range want {
			if math.Round(got[j]) != math.Round(want[j]) {
				t.Fatalf("histogram %d (%d buckets, %d calls), quantile %d: engine %v, Go %v", i, len(hist), n, j, got[j], want[j])
			}
		}
	}
}

// TestStoredHistogramsAreInBucketOrder: every latency histogram the
// rollups hold — as inserted, and merged — has its buckets in key order,
// which histogramQuantilesSQL relies on (it does not sort them again).
func TestStoredHistogramsAreInBucketOrder(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	r := rand.New(rand.NewPCG(3, 5))
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	for part := 0; part < 2; part++ {
		var spans []Span
		for i := 0; i < 300; i++ {
			at := base.Add(time.Duration(r.IntN(7200)) * time.Second)
			latency := time.Duration(r.IntN(5_000_000)) * time.Microsecond
			spans = append(spans, span(fmt.Sprintf("h-%d-%d", part, i), []string{"a", "b"}[i%2], "g", at, latency, uint64(part*300+i)))
		}
		if err := s.Insert(ctx, spans); err != nil {
			t.Fatal(err)
		}
	}
	for _, table := range []string{"spans_latency_1m", "spans_latency_1h"} {
		for _, merged := range []bool{false, true} {
			if merged {
				if err := s.conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
					t.Fatal(err)
				}
			}
			var rows, unordered, calls uint64
			q := `SELECT count(), countIf(mapKeys(latency_hist) != arraySort(mapKeys(latency_hist))), sum(calls) FROM ` + table
			if err := s.queryRow(ctx, q).Scan(&rows, &unordered, &calls); err != nil {
				t.Fatal(err)
			}
			if rows == 0 || calls != 600 || unordered != 0 {
				t.Errorf("%s (merged %v): %d rows, %d calls, %d histograms out of bucket order", table, merged, rows, calls, unordered)
			}
		}
	}
}
