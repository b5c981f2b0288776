package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestSplitRecords(t *testing.T) {
	cases := []struct {
		name string
		body string
		want []string
		err  error
	}{
		{"array", `[{"a":1}, {"b":2}]`, []string{`{"a":1}`, `{"b":2}`}, nil},
		{"empty array", `[]`, nil, nil},
		{"ndjson with blank lines", "{\"a\":1}\n\n  {\"b\":2}  \r\n", []string{`{"a":1}`, `{"b":2}`}, nil},
		// In NDJSON a bad line is kept for the decoder to reject alone.
		{"ndjson bad line", "{\"a\":1}\n{oops\n{\"b\":2}", []string{`{"a":1}`, `{oops`, `{"b":2}`}, nil},
		{"single object", `{"a":1}`, []string{`{"a":1}`}, nil},
		{"pretty object", "{\n  \"a\": 1,\n  \"b\": [2]\n}\n", []string{"{\n  \"a\": 1,\n  \"b\": [2]\n}"}, nil},
		{"concatenated objects", `{"a":1}{"b":2}`, []string{`{"a":1}`, `{"b":2}`}, nil},
		{"truncated array", `[{"a":1},`, nil, errMalformed},
		{"garbage after array", `[{"a":1}] x`, nil, errMalformed},
		{"second array", `[{"a":1}][]`, nil, errMalformed},
		{"empty", "  \n", nil, errMalformed},
		// A valid pretty-printed object before a bad line is kept, and
		// result i stays the request's record i.
		{"pretty object then bad line", "{\n  \"a\": 1\n}\n{oops\n{\"b\":2}\n", []string{"{\n  \"a\": 1\n}", `{oops`, `{"b":2}`}, nil},
		{"pretty objects around bad line", "{\n \"a\": 1\n}\n{oops\n{\n \"b\": 2\n}", []string{"{\n \"a\": 1\n}", `{oops`, "{\n \"b\": 2\n}"}, nil},
		{"ndjson truncated line", "{\"a\":1}\n{\"b\":\n{\"c\":3}\n", []string{`{"a":1}`, `{"b":`, `{"c":3}`}, nil},
		{"bad last line", "{\"a\":1}\n{oops", []string{`{"a":1}`, `{oops`}, nil},
		// A broken multi-line object: its records cannot be counted.
		{"broken pretty object", "{\"a\":1}\n{\n  \"b\": x,\n  \"c\": 2\n}\n", nil, errMalformed},
		{"broken pretty object first", "{\n  \"b\": 1,\n  \"c\" 2\n}\n{\"a\":1}\n", nil, errMalformed},
		{"pretty object then truncated object", "{\n  \"a\": 1\n}\n{\"b\":\n{\"c\":3}\n", nil, errMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := splitRecords([]byte(c.body))
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d records %q, want %q", len(got), got, c.want)
			}
			for i := range got {
				if string(got[i]) != c.want[i] {
					t.Fatalf("record %d = %q, want %q", i, got[i], c.want[i])
				}
			}
		})
	}
}

// Records are returned as slices of the body; across the decoder's buffer
// refills each must still be exactly its record.
func TestSplitRecordsLargeBody(t *testing.T) {
	var body bytes.Buffer
	var want []string
	body.WriteString("[\n")
	for i := range 3000 {
		rec := fmt.Sprintf(`{"record_id":"r-%d","pad":"%s","n":[%d, {"x": "y"}]}`, i, strings.Repeat("p", i%700), i)
		want = append(want, rec)
		if i > 0 {
			body.WriteString(" ,\n ")
		}
		body.WriteString(rec)
	}
	body.WriteString("\n]")
	for _, in := range [][]byte{body.Bytes(), []byte(strings.Join(want, "\n"))} {
		got, err := splitRecords(in)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d records, want %d", len(got), len(want))
		}
		for i := range got {
			if string(got[i]) != want[i] {
				t.Fatalf("record %d is %q, want %q", i, got[i], want[i])
			}
		}
	}
}

func TestReadBody(t *testing.T) {
	payload := []byte(strings.Repeat(`{"record_id":"x"}`+"\n", 100))
	var gzBuf bytes.Buffer
	zw := gzip.NewWriter(&gzBuf)
	zw.Write(payload)
	zw.Close()
	enc, _ := zstd.NewWriter(nil)
	zstdBody := enc.EncodeAll(payload, nil)
	bomb := func() []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(make([]byte, 1<<20))
		w.Close()
		return b.Bytes()
	}()

	cases := []struct {
		name     string
		encoding string
		body     []byte
		limit    int64
		want     []byte
		err      error
	}{
		{"identity", "", payload, 1 << 20, payload, nil},
		{"gzip", "gzip", gzBuf.Bytes(), 1 << 20, payload, nil},
		{"zstd", "zstd", zstdBody, 1 << 20, payload, nil},
		{"too large raw", "", payload, 100, nil, errTooLarge},
		{"too large after gunzip", "gzip", bomb, 64 << 10, nil, errTooLarge},
		{"corrupt gzip", "gzip", []byte("nope"), 1 << 20, nil, errBadCompression},
		{"corrupt zstd", "zstd", []byte("nope"), 1 << 20, nil, errBadCompression},
		{"unknown", "br", payload, 1 << 20, nil, errUnsupportedCode},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/records", bytes.NewReader(c.body))
			if c.encoding != "" {
				r.Header.Set("Content-Encoding", c.encoding)
			}
			got, err := readBody(context.Background(), r, c.limit, (*Budget)(nil).start())
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if c.err == nil && !bytes.Equal(got, c.want) {
				t.Fatalf("body differs: %d bytes, want %d", len(got), len(c.want))
			}
		})
	}
}

// BenchmarkSplitRecords splits a JSON array of 400 records of ~900
// bytes, the size of a gateway's batch every 10 ms at 40k records/s.
func BenchmarkSplitRecords(b *testing.B) {
	var body bytes.Buffer
	body.WriteByte('[')
	for i := range 400 {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"record_id":"%032x","ts_start":"2026-11-25T10:00:00.000Z","ts_end":"2026-11-25T10:00:00.120Z","actor":{"id":"agent-%d","type":"agent","on_behalf_of":"user-%d@example.com"},"tool":{"name":"search_tickets","server":"jira-mcp","group":"ticketing"},"policy":{"decision":"allow"},"outcome":{"status":"ok"},"args_sha256":"%064x","result_sha256":"%064x","attributes":{"env":"bench","tenant":"t-%d"},"trace":{"trace_id":"%032x","span_id":"%016x"}}`,
			rand.Uint64(), i%50, i%500, rand.Uint64(), rand.Uint64(), i%10, rand.Uint64(), rand.Uint64())
	}
	body.WriteByte(']')
	b.SetBytes(int64(body.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if out, err := splitRecords(body.Bytes()); err != nil || len(out) != 400 {
			b.Fatal(len(out), err)
		}
	}
}
