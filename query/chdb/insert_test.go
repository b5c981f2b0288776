package chdb

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestLargeBatchInsert: a batch far beyond the ~20 KiB libchdb reads inline
// after a statement must arrive whole (the transport spools it to a file).
func TestLargeBatchInsert(t *testing.T) {
	ctx := context.Background()
	conn := openCH(t)
	if err := conn.Exec(ctx, `CREATE OR REPLACE TABLE t_big (id String, v UInt64, s String) ENGINE = MergeTree ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	b, err := conn.PrepareBatch(ctx, "INSERT INTO t_big")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := b.Append(fmt.Sprintf("id-%06d", i), uint64(i), strings.Repeat("x", i%300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatalf("send %d rows: %v", n, err)
	}
	var got uint64
	if err := conn.QueryRow(ctx, `SELECT count() FROM t_big`).Scan(&got); err != nil || got != n {
		t.Fatalf("count %d (%v), want %d", got, err, n)
	}
}
