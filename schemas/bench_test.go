package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/proofline/proofline/internal/cpustat"
)

// cpuNs is the process's CPU time so far (user + system). The machine the
// benchmarks run on is shared, so wall time per op swings with the load;
// CPU time per op (reported as cpu-ns/op) is what the code itself costs.
func cpuNs(b *testing.B) int64 {
	d, err := cpustat.Self()
	if err != nil {
		b.Fatal(err)
	}
	return d.Nanoseconds()
}

// eachRecord runs f on recs in turn for b.N ops and reports the CPU time
// per op (cpu-ns/op), the figure the per-record benchmarks compare.
func eachRecord(b *testing.B, recs [][]byte, f func(rec []byte)) {
	b.ReportAllocs()
	i := 0
	cpu0 := cpuNs(b)
	for b.Loop() {
		f(recs[i%len(recs)])
		i++
	}
	b.ReportMetric(float64(cpuNs(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

func BenchmarkDecodeCanonical(b *testing.B) {
	in := []byte(fullRecord)
	b.ReportAllocs()
	for b.Loop() {
		r, err := Decode(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Canonical(); err != nil {
			b.Fatal(err)
		}
	}
}

// realisticRecords are records as a gateway sends them: random UUIDv7-shaped
// ids, SHA-256 digests of random arguments and results, random trace
// context, nanosecond timestamps, so no two records share their strings.
func realisticRecords(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	hexOf := func(nbytes int) string {
		b := make([]byte, nbytes)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return hex.EncodeToString(b)
	}
	digest := func() string {
		sum := sha256.Sum256([]byte(hexOf(64)))
		return hex.EncodeToString(sum[:])
	}
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	out := make([][]byte, n)
	for i := range out {
		id := hexOf(16)
		id = id[:8] + "-" + id[8:12] + "-7" + id[13:16] + "-" + id[16:20] + "-" + id[20:]
		start := t0.Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
		end := start.Add(time.Duration(rng.Int64N(int64(2 * time.Second))))
		out[i] = fmt.Appendf(nil, `{"record_id":%q,"ts_start":%q,"ts_end":%q,`+
			`"actor":{"id":"agent-%d","type":"agent","on_behalf_of":"user%d@example.com"},`+
			`"tool":{"name":"search_tickets","server":"jira-mcp","version":"1.4.0","group":"ticketing"},`+
			`"mcp":{"method":"tools/call","session_id":%q,"request_id":"%d","transport":"http"},`+
			`"trace":{"trace_id":%q,"span_id":%q,"parent_span_id":%q},`+
			`"scope_grants":["tickets:read","tickets:write"],`+
			`"policy":{"decision":"allow","rule":"default-allow"},"outcome":{"status":"ok"},`+
			`"args_sha256":%q,"result_sha256":%q,`+
			`"cost":{"amount":%g,"currency":"USD","tokens_in":%d,"tokens_out":%d},`+
			`"workflow_id":"wf-billing","region":"eu-west-1","attributes":{"env":"prod","tenant":"t-%d"}}`,
			id, start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano),
			rng.IntN(100), rng.IntN(1000), hexOf(8), rng.IntN(1e6),
			hexOf(16), hexOf(8), hexOf(8), digest(), digest(),
			float64(rng.IntN(100000))/1e6, rng.IntN(5000), rng.IntN(5000), rng.IntN(50))
	}
	return out
}

// canonicalForms decodes each record and returns its canonical form.
func canonicalForms(tb testing.TB, records [][]byte) [][]byte {
	tb.Helper()
	out := make([][]byte, len(records))
	for i, in := range records {
		r, err := Decode(in)
		if err != nil {
			tb.Fatalf("%v\n%s", err, in)
		}
		if out[i], err = r.Canonical(); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// BenchmarkDecodeRealistic is Decode plus Canonical of one record, the
// fast path's work per record at ingest.
func BenchmarkDecodeRealistic(b *testing.B) {
	recs := realisticRecords(4096)
	for _, r := range recs {
		if _, err := Decode(r); err != nil {
			b.Fatalf("%v\n%s", err, r)
		}
	}
	eachRecord(b, recs, func(rec []byte) {
		r, err := Decode(rec)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Canonical(); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkDecodeFromCanonical is ingest's work per record when the
// record comes in canonical form (as CallRecord.Canonical writes it and
// bench/ingest sends it), stamped with another principal.
func BenchmarkDecodeFromCanonical(b *testing.B) {
	recs := canonicalForms(b, realisticRecords(4096))
	eachRecord(b, recs, func(rec []byte) {
		if _, _, err := DecodeFrom(rec, "gw-1"); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkCanonicalize(b *testing.B) {
	r, _ := Decode([]byte(fullRecord))
	c, _ := r.Canonical()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonicalize(c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIJSONErrors is the I-JSON walk over one realistic record. Only
// the fallback runs it (the fast path gets the same strictness from its
// decoders); this is what it would cost on every record.
func BenchmarkIJSONErrors(b *testing.B) {
	recs := realisticRecords(4096)
	eachRecord(b, recs, func(rec []byte) {
		if bad, err := ijsonErrors(rec); err != nil || len(bad) > 0 {
			b.Fatal(err, bad)
		}
	})
}

// BenchmarkStrictFastPathChecks is the work the I-JSON rules add to the
// fast path per record: the fraction-digit count of both timestamps and
// the underflow test of an amount (only a zero amount pays for it; this
// pays it on every record).
func BenchmarkStrictFastPathChecks(b *testing.B) {
	ts := [2]string{"2026-11-26T03:32:22.825149821Z", "2026-11-26T03:32:23.842323277+01:00"}
	amount := []byte("0.001257")
	n := 0
	for b.Loop() {
		n += fractionDigits(ts[0]) + fractionDigits(ts[1])
		if nonZeroMantissa(amount) {
			n++
		}
	}
	if n == 0 {
		b.Fatal("no work done")
	}
}

// BenchmarkIsCanonicalRecord is the check the signer and the span store
// make on every record they read: decode, noting on the way whether the
// input is the canonical form (else re-encode and compare).
func BenchmarkIsCanonicalRecord(b *testing.B) {
	recs := canonicalForms(b, realisticRecords(4096))
	eachRecord(b, recs, func(rec []byte) {
		if _, ok := IsCanonicalRecord(rec); !ok {
			b.Fatalf("not canonical: %s", rec)
		}
	})
}
