package spanstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func countSpans(t *testing.T, s *Store) uint64 {
	t.Helper()
	var n uint64
	if err := s.conn.QueryRow(context.Background(), `SELECT count() FROM spans FINAL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWriteSpansOverManyDays: a batch whose records fall on 120 UTC days
// is stored whole. One INSERT of it is refused by ClickHouse ("Too many
// partitions for single INSERT block (more than 100)"), and the writer
// used to retry that insert forever.
func TestWriteSpansOverManyDays(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	// Days ahead: the table's 90-day TTL would drop days far behind.
	base := time.Now().UTC().Truncate(24 * time.Hour).Add(time.Hour)
	var spans []Span
	for i := range 120 {
		spans = append(spans, span(fmt.Sprintf("day-%03d", i), "search", "tickets", base.Add(time.Duration(i)*24*time.Hour), time.Millisecond, uint64(i)))
	}
	// Interleaved days, as one request from a gateway could be.
	for i := range 40 {
		spans = append(spans, span(fmt.Sprintf("again-%03d", i), "search", "tickets", base.Add(time.Duration(119-3*i)*24*time.Hour), time.Millisecond, uint64(200+i)))
	}
	rejected, err := s.Write(ctx, spans)
	if err != nil || len(rejected) != 0 {
		t.Fatalf("write 160 spans over 120 days: rejected %v, err %v", rejected, err)
	}
	if n := countSpans(t, s); n != 160 {
		t.Fatalf("stored %d spans, want 160", n)
	}
}

// TestWriteIsolatesRejectedSpans: spans ClickHouse itself refuses (here a
// table constraint, ClickHouse's VIOLATED_CONSTRAINT) are returned with
// ClickHouse's reason and every other span of the batch is stored, after
// a few more inserts rather than never.
func TestWriteIsolatesRejectedSpans(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if err := s.conn.Exec(ctx, `ALTER TABLE spans ADD CONSTRAINT no_poison CHECK NOT startsWith(record_id, 'poison')`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.conn.Exec(context.Background(), `ALTER TABLE spans DROP CONSTRAINT no_poison`) })
	base := time.Now().UTC().Add(-time.Hour)
	var spans []Span
	poison := map[string]bool{"poison-7": true, "poison-41": true, "poison-42": true}
	for i := range 64 {
		id := fmt.Sprintf("ok-%02d", i)
		if i == 7 || i == 41 || i == 42 {
			id = fmt.Sprintf("poison-%d", i)
		}
		spans = append(spans, span(id, "search", "tickets", base.Add(time.Duration(i)*time.Second), time.Millisecond, uint64(1000+i)))
	}
	rejected, err := s.Write(ctx, spans)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	got := map[string]bool{}
	for _, r := range rejected {
		got[r.Span.Record.RecordID] = true
		if !strings.Contains(r.Err.Error(), "no_poison") || !isRejected(r.Err) {
			t.Errorf("rejection of %s: %v, want ClickHouse's constraint error", r.Span.Record.RecordID, r.Err)
		}
	}
	if len(got) != len(poison) || !got["poison-7"] || !got["poison-41"] || !got["poison-42"] {
		t.Fatalf("rejected %v, want %v", got, poison)
	}
	if n := countSpans(t, s); n != 61 {
		t.Fatalf("stored %d spans, want the 61 ClickHouse takes", n)
	}
	// Insert (all or an error) says which spans were refused.
	if err := s.Insert(ctx, []Span{span("poison-x", "search", "tickets", base, time.Millisecond, 2000)}); err == nil || !strings.Contains(err.Error(), "poison-x") {
		t.Fatalf("Insert of a refused span: %v", err)
	}
}

// faultyTransport answers ClickHouse's HTTP interface from the embedded
// engine, except while fail holds an error: then every request fails as a
// connection to a server that is down would.
type faultyTransport struct {
	next http.RoundTripper
	fail atomic.Pointer[error]
}

func (f *faultyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if p := f.fail.Load(); p != nil {
		return nil, *p
	}
	return f.next.RoundTrip(r)
}

// throughTransport is the shared store seen through rt.
func throughTransport(t *testing.T, s *Store, rt http.RoundTripper) *Store {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Protocol:      clickhouse.HTTP,
		Addr:          []string{"chdb.embedded:8123"},
		TransportFunc: func(*http.Transport) (http.RoundTripper, error) { return rt, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Store{cfg: s.cfg, table: s.table, tables: s.tables, conn: conn, log: s.log}
}

// TestWriteRetriesWhenClickHouseIsDown: a connection failure is not the
// records' fault: nothing is rejected (and so nothing dead-lettered), the
// batch is for retrying whole, and it is stored once ClickHouse is back.
func TestWriteRetriesWhenClickHouseIsDown(t *testing.T) {
	ctx := context.Background()
	shared := testStore(t)
	ft := &faultyTransport{next: shared.engine.Transport()}
	s := throughTransport(t, shared, ft)
	down := error(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	ft.fail.Store(&down)
	base := time.Now().UTC().Add(-time.Hour)
	var spans []Span
	for i := range 10 {
		spans = append(spans, span(fmt.Sprintf("later-%d", i), "search", "tickets", base.Add(time.Duration(i)*time.Second), time.Millisecond, uint64(i)))
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ping through a down server succeeded")
	}
	rejected, err := s.Write(ctx, spans)
	if err == nil || len(rejected) != 0 || isRejected(err) {
		t.Fatalf("write while down: rejected %v, err %v; want a transient error and no rejections", rejected, err)
	}
	ft.fail.Store(nil)
	if rejected, err := s.Write(ctx, spans); err != nil || len(rejected) != 0 {
		t.Fatalf("write after recovery: rejected %v, err %v", rejected, err)
	}
	if n := countSpans(t, s); n != 10 {
		t.Fatalf("stored %d spans, want 10", n)
	}
}

// TestRejectedCodes: only ClickHouse errors about the rows themselves
// send records to the dead letters; the names are the engine's own.
func TestRejectedCodes(t *testing.T) {
	s := testStore(t)
	for code, name := range rejectedCodes {
		var got string
		if err := s.conn.QueryRow(context.Background(), fmt.Sprintf("SELECT errorCodeToName(%d)", code)).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != name {
			t.Errorf("code %d is %s in ClickHouse, listed as %s", code, got, name)
		}
	}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&clickhouse.Exception{Code: 469, Message: "Constraint `c` for table spans is violated"}, true},
		{fmt.Errorf("insert: %w", &clickhouse.HTTPError{StatusCode: 500, Err: &clickhouse.Exception{Code: 53}}), true},
		{&clickhouse.Exception{Code: codeTooManyParts, Message: "Too many partitions for single INSERT block (more than 100)"}, true},
		{&clickhouse.Exception{Code: codeTooManyParts, Message: "Too many parts (300). Merges are processing significantly slower than inserts"}, false},
		{&clickhouse.Exception{Code: 242, Message: "Table is in readonly mode"}, false},
		{&clickhouse.Exception{Code: 241, Message: "Memory limit exceeded"}, false},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false},
		{context.DeadlineExceeded, false},
		{fmt.Errorf("append: %w: %w", ErrRejected, errors.New("bad value")), true},
	} {
		if got := isRejected(c.err); got != c.want {
			t.Errorf("isRejected(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestRetentionFollowsConfig: the spans table's TTL is the configured
// retention on every start, not only the first.
func TestRetentionFollowsConfig(t *testing.T) {
	ctx := context.Background()
	shared := testStore(t)
	at := func(days int) *Store {
		cfg := shared.cfg
		cfg.RetentionDays = days
		return &Store{cfg: cfg, table: shared.table, tables: shared.tables, conn: shared.conn, log: shared.log}
	}
	t.Cleanup(func() { _ = at(90).Migrate(context.Background()) })
	for _, days := range []int{30, 400, 90} {
		s := at(days)
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := s.RetentionDays(ctx)
		if err != nil || got != days {
			t.Fatalf("--retention-days %d: the table's TTL is %d days (%v)", days, got, err)
		}
		// Every table kept for days — the rollups and plan tables too.
		rows, err := s.conn.Query(ctx, `SELECT name FROM system.tables
			WHERE database = currentDatabase() AND match(create_table_query, 'TTL .*toIntervalDay') ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		for rows.Next() {
			var table string
			if err := rows.Scan(&table); err != nil {
				t.Fatal(err)
			}
			n++
			if _, got, err := s.tableRetention(ctx, table); err != nil || got != days {
				t.Errorf("--retention-days %d: the TTL of %s is %d days (%v)", days, table, got, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if n < 14 {
			t.Fatalf("%d tables kept for days, want spans, spans_latest and 12 rollup and plan tables", n)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want []string
	}{
		{Config{DataDir: "d"}, nil},
		{Config{DSN: "clickhouse://h:9000/db"}, nil},
		{Config{}, []string{"DataDir"}},
		{Config{DataDir: "d", RetentionDays: -1, Cluster: "a b", MaxPartitionsPerInsert: -2}, []string{"RetentionDays", "Cluster", "MaxPartitionsPerInsert"}},
		{Config{DSN: "clickhouse://h:9000/db?dial_timeout=soon"}, []string{"DSN"}},
	} {
		err := c.cfg.Validate()
		if (err == nil) != (len(c.want) == 0) {
			t.Errorf("%+v: %v", c.cfg, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want it to name %s", c.cfg, err, w)
			}
		}
	}
}
