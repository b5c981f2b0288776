// Package gen makes the benchmarks' synthetic records realistic where it
// matters for cost: ids and digests are random in real traffic, and
// counters would compress and hash as they never do.
package gen

import (
	"crypto/rand"
	"encoding/hex"
)

// RandHex is n random bytes as lowercase hex. crypto/rand.Read never
// fails (Go 1.24+: it panics on a broken source instead).
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
