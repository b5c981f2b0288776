package chdb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// openCH opens clickhouse-go/v2 — the production client — on the embedded
// engine through Transport.
func openCH(t *testing.T) clickhouse.Conn {
	t.Helper()
	e := openTest(t)
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol:      clickhouse.HTTP,
		Addr:          []string{"chdb.embedded:8123"},
		TransportFunc: func(*http.Transport) (http.RoundTripper, error) { return e.Transport(), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestClickhouseGoOverChDB(t *testing.T) {
	ctx := context.Background()
	conn := openCH(t)
	if err := conn.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := conn.Exec(ctx, `DROP TABLE IF EXISTS t_spans`); err != nil {
		t.Fatal(err)
	}
	err := conn.Exec(ctx, `CREATE TABLE t_spans (
		ts DateTime64(9, 'UTC') CODEC(DoubleDelta, ZSTD),
		tool LowCardinality(String),
		latency_ms Float64,
		n UInt64,
		attrs Map(String, String)
	) ENGINE = MergeTree ORDER BY (tool, ts)`)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO t_spans")
	if err != nil {
		t.Fatalf("prepare batch: %v", err)
	}
	base := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	for i := 0; i < 100; i++ {
		tool := []string{"a", "b"}[i%2]
		if err := batch.Append(base.Add(time.Duration(i)*time.Second), tool, float64(i+1), uint64(i), map[string]string{"k": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("send batch: %v", err)
	}

	var count uint64
	var p95 float64
	qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"tool": "a"}))
	if err := conn.QueryRow(qctx, `SELECT count(), quantileExact(0.95)(latency_ms) FROM t_spans WHERE tool = {tool:String}`).Scan(&count, &p95); err != nil {
		t.Fatalf("query row: %v", err)
	}
	// tool a has latencies 1,3,...,99; the exact 0.95 quantile of 50 values is the 48th (index 47): 95.
	if count != 50 || p95 != 95 {
		t.Fatalf("count %d p95 %v, want 50 and 95", count, p95)
	}
	rows, err := conn.Query(ctx, `SELECT ts, attrs['k'] FROM t_spans WHERE n < 3 ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var ts time.Time
		var k string
		if err := rows.Scan(&ts, &k); err != nil {
			t.Fatal(err)
		}
		got = append(got, ts.UTC().Format(time.RFC3339Nano)+"="+k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "2026-11-25T10:00:00.123456789Z=0" {
		t.Fatalf("rows %v", got)
	}

	// Engine errors surface as ClickHouse exceptions with their code.
	err = conn.Exec(ctx, `SELECT (`)
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) || ex.Code != 62 {
		t.Fatalf("syntax error: %v, want exception code 62", err)
	}
}

func TestConcurrentQueries(t *testing.T) {
	ctx := context.Background()
	conn := openCH(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				var v uint64
				want := uint64(g*1000 + i)
				qctx := clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"v": fmt.Sprint(want)}))
				if err := conn.QueryRow(qctx, `SELECT {v:UInt64}`).Scan(&v); err != nil {
					errs <- err
					return
				}
				if v != want {
					errs <- fmt.Errorf("got %d want %d", v, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
