//go:build unix

package cpustat

import (
	"crypto/sha256"
	"testing"
)

// TestSelfCountsWork checks that CPU time spent between two readings is
// counted: a benchmark dividing by records would otherwise report zero.
func TestSelfCountsWork(t *testing.T) {
	before, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range 200 { // about a tenth of a second of hashing
		buf[0] = byte(i)
		_ = sha256.Sum256(buf)
	}
	after, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Fatalf("CPU time did not grow over 200 MiB of hashing: %v then %v", before, after)
	}
}
