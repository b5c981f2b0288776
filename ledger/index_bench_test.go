package ledger

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	"github.com/proofline/proofline/internal/cpustat"
)

// BenchmarkIndexPut is the record index as the signer uses it: one
// synced commit of 2,000 new random ids (gateways' ids are random, the
// costly case for an LSM) per op. It reports the process's CPU per record
// (cpu-ns/record), Pebble's background flushes and compactions included,
// also those still running a second after the last commit: wall time on a
// shared machine says little, the CPU is what the index costs the server.
// Run it long enough for compactions to happen, e.g. -benchtime 600x
// (1.2M ids).
func BenchmarkIndexPut(b *testing.B) {
	const perCommit = 2000
	x, err := openIndex(b.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer x.close()
	// The ids are made before the clock starts.
	batches := make([]map[string]held, b.N)
	var leaf uint64
	for i := range batches {
		batches[i] = make(map[string]held, perCommit)
		for range perCommit {
			var id [16]byte
			_, _ = rand.Read(id[:])
			leaf++
			batches[i][hex.EncodeToString(id[:])] = held{leaf: leaf, hash: leafHash(id[:])}
		}
	}
	cpu := func() int64 {
		d, err := cpustat.Self()
		if err != nil {
			b.Fatal(err)
		}
		return d.Nanoseconds()
	}
	b.ResetTimer()
	cpu0 := cpu()
	for i := range b.N {
		if err := x.put(batches[i], uint64((i+1)*perCommit)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	time.Sleep(time.Second)
	b.ReportMetric(float64(cpu()-cpu0)/float64(b.N*perCommit), "cpu-ns/record")
}
