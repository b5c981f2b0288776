package exporters

import (
	"testing"
)

// TestLeafFields: the runner reads a leaf's record id, routing fields and
// start time from its top level only, with JSON escapes undone; a leaf that
// is not a call record (no record id, not an object) is an error.
func TestLeafFields(t *testing.T) {
	for _, tc := range []struct {
		name, leaf string
		want       fields
		err        bool
	}{
		{name: "all", leaf: `{"actor":{"id":"a","region":"no"},"data_class":"pii","record_id":"r1","region":"eu","tool":{"name":"x"},"ts_start":"2026-12-01T10:00:00.5Z"}`,
			want: fields{RecordID: "r1", Region: "eu", DataClass: "pii", TSStart: "2026-12-01T10:00:00.5Z"}},
		{name: "nested names are not the record's", leaf: `{"actor":{"record_id":"x","region":"us"},"record_id":"r2"}`,
			want: fields{RecordID: "r2"}},
		{name: "escapes", leaf: `{"record_id":"r\u00e9\"3","region":"e\/u"}`, want: fields{RecordID: "ré\"3", Region: "e/u"}},
		{name: "names inside strings", leaf: `{"note":"\"region\":\"us\"","record_id":"r4"}`, want: fields{RecordID: "r4"}},
		{name: "no record id", leaf: `{"region":"eu"}`, err: true},
		{name: "empty record id", leaf: `{"record_id":""}`, err: true},
		{name: "record id not a string", leaf: `{"record_id":7}`, err: true},
		{name: "not an object", leaf: `["record_id","r"]`, err: true},
		{name: "not JSON", leaf: `record_id`, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := leafFields([]byte(tc.leaf))
			if tc.err {
				if err == nil {
					t.Fatalf("leafFields(%s) = %+v, want an error", tc.leaf, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("leafFields(%s) = %+v, %v; want %+v", tc.leaf, got, err, tc.want)
			}
		})
	}
}

func BenchmarkLeafFields(b *testing.B) {
	leaf := []byte(`{"actor":{"id":"agent-7","on_behalf_of":"user12@example.com","type":"agent"},"args_sha256":"5e1f0b0c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c","ingested_by":"gw-1","mcp":{"method":"tools/call","request_id":"7","session_id":"8f2a7c1e9b3d4f60a1b2c3d4e5f60718","transport":"http"},"outcome":{"status":"ok"},"policy":{"decision":"allow"},"record_id":"019a7c3e-5b1f-7c2a-9e4d-3f2a1b0c9d8e","result_sha256":"9a8b7c6d5e4f30211a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081","tool":{"group":"ops","name":"search_tickets","server":"mcp-3","version":"1.4.2"},"trace":{"span_id":"1a2b3c4d5e6f7081","trace_id":"0f1e2d3c4b5a69788796a5b4c3d2e1f0"},"ts_end":"2026-12-02T10:00:00.120Z","ts_start":"2026-12-02T10:00:00.1Z"}`)
	b.SetBytes(int64(len(leaf)))
	for b.Loop() {
		if _, err := leafFields(leaf); err != nil {
			b.Fatal(err)
		}
	}
}
