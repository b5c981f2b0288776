package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(b, nil)
}

// TestIngestProveVerify is the walkthrough of the README: post records in
// every accepted form, fetch their proof bundles, verify them offline with
// the CLI, see a one-byte change fail, audit the live log and see a tile
// altered on disk detected.
func TestIngestProveVerify(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	ingestTok := s.token("gw-1", "ingest", "1h")
	queryTok := s.token("auditor", "query", "1h")

	all := ids("walk", 40)
	bodies := []struct {
		name    string
		body    []byte
		headers map[string]string
	}{
		{"json array", jsonArray(t, records(all[0:10])...), map[string]string{"Content-Type": "application/json"}},
		{"ndjson", ndjson(t, records(all[10:20])...), map[string]string{"Content-Type": "application/x-ndjson"}},
		{"gzip ndjson", gz(t, ndjson(t, records(all[20:30])...)), map[string]string{"Content-Encoding": "gzip"}},
		{"zstd array", zst(t, jsonArray(t, records(all[30:40])...)), map[string]string{"Content-Encoding": "zstd"}},
	}
	for _, b := range bodies {
		code, _, pr, err := s.post(ingestTok, b.body, b.headers)
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		if code != http.StatusAccepted || pr.Accepted != 10 || len(pr.Results) != 10 {
			t.Fatalf("%s: got %d %+v, want 202 with 10 accepted", b.name, code, pr)
		}
		for _, r := range pr.Results {
			if r.Status != "accepted" || r.StreamSeq == 0 {
				t.Fatalf("%s: result %+v, want accepted with a stream sequence", b.name, r)
			}
		}
	}

	keyPath := filepath.Join(data, "keys", "log.pub")
	// The key served over HTTP is the one in the data dir.
	code, served := s.get("", "/v1/log/key")
	onDisk, _ := os.ReadFile(keyPath)
	if code != 200 || strings.TrimSpace(string(served)) != strings.TrimSpace(string(onDisk)) {
		t.Fatalf("/v1/log/key = %d %q, want the contents of log.pub %q", code, served, onDisk)
	}

	bundleDir := t.TempDir()
	seen := map[uint64]string{}
	for _, id := range all {
		raw := s.waitProof(queryTok, id)
		var b struct {
			Record    map[string]any `json:"record"`
			LeafIndex uint64         `json:"leaf_index"`
		}
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		if b.Record["record_id"] != id || b.Record["ingested_by"] != "gw-1" {
			t.Fatalf("bundle for %s holds record %v ingested by %v", id, b.Record["record_id"], b.Record["ingested_by"])
		}
		if other, dup := seen[b.LeafIndex]; dup {
			t.Fatalf("%s and %s share leaf %d", id, other, b.LeafIndex)
		}
		seen[b.LeafIndex] = id
		p := filepath.Join(bundleDir, id+".json")
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Offline verification, through the binary, of a few bundles.
	for _, id := range []string{all[0], all[17], all[39]} {
		out, errOut, code := cli(t, "verify", "--bundle", filepath.Join(bundleDir, id+".json"), "--key", keyPath)
		if code != 0 || !strings.HasPrefix(out, "OK") {
			t.Fatalf("verify %s: exit %d\n%s%s", id, code, out, errOut)
		}
	}

	// One byte of the record changed: verification must fail, exit 1.
	orig, _ := os.ReadFile(filepath.Join(bundleDir, all[5]+".json"))
	tampered := bytes.Replace(orig, []byte(`"agent-7"`), []byte(`"agent-8"`), 1)
	if bytes.Equal(orig, tampered) {
		t.Fatal("test did not alter the bundle")
	}
	tp := filepath.Join(bundleDir, "tampered.json")
	if err := os.WriteFile(tp, tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cli(t, "verify", "--bundle", tp, "--key", keyPath)
	if code != 1 || !strings.Contains(out, "FAILED") {
		t.Fatalf("tampered bundle: exit %d, want 1\n%s%s", code, out, errOut)
	}

	// Something that is not a bundle (an error answer saved by mistake) is
	// a usage error, exit 2, not a verification failure.
	notBundle := filepath.Join(bundleDir, "error.json")
	os.WriteFile(notBundle, []byte(`{"error":{"code":"not_found","message":"x"}}`), 0o644)
	if out, errOut, code := cli(t, "verify", "--bundle", notBundle, "--key", keyPath); code != 2 {
		t.Fatalf("non-bundle: exit %d, want 2\n%s%s", code, out, errOut)
	}
	if _, _, code := cli(t, "verify", "--bundle", filepath.Join(bundleDir, "missing.json"), "--key", keyPath); code != 2 {
		t.Fatalf("missing bundle file: exit %d, want 2", code)
	}

	// A key that is not the log's: the checkpoint signature must fail.
	otherKeys := t.TempDir()
	if _, errOut, code := cli(t, "keygen", "--origin", "e2e.proofline.test/log", "--out", otherKeys); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	out, _, code = cli(t, "verify", "--bundle", filepath.Join(bundleDir, all[0]+".json"), "--key", filepath.Join(otherKeys, "log.pub"))
	if code != 1 || !strings.Contains(strings.ToLower(out), "signature") {
		t.Fatalf("bundle against another key: exit %d %q, want 1 naming the signature", code, out)
	}

	// Audit the live log: passes, then a tile altered on disk is caught.
	state := filepath.Join(t.TempDir(), "state.json")
	out, errOut, code = cli(t, "verify", "--log", s.url, "--key", keyPath, "--token", queryTok, "--state", state)
	if code != 0 {
		t.Fatalf("verify --log: exit %d\n%s%s", code, out, errOut)
	}
	size := checkpointSize(t, s, queryTok, keyPath)
	tile := filepath.Join(data, "log", layout.TilePath(0, 0, layout.PartialTileSize(0, 0, size)))
	tb, err := os.ReadFile(tile)
	if err != nil {
		t.Fatalf("read tile: %v", err)
	}
	tb[3] ^= 0x01
	if err := os.WriteFile(tile, tb, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = cli(t, "verify", "--log", s.url, "--key", keyPath, "--token", queryTok, "--state", state)
	if code != 1 || !strings.Contains(out, "tile") {
		t.Fatalf("verify --log after altering %s: exit %d, want 1 naming the tile\n%s%s", tile, code, out, errOut)
	}
}

// checkpointSize reads and verifies the live checkpoint.
func checkpointSize(t *testing.T, s *server, tok, keyPath string) uint64 {
	t.Helper()
	code, raw := s.get(tok, "/checkpoint")
	if code != 200 {
		t.Fatalf("/checkpoint: %d %s", code, raw)
	}
	vk, _ := os.ReadFile(keyPath)
	v, err := note.NewVerifier(strings.TrimSpace(string(vk)))
	if err != nil {
		t.Fatal(err)
	}
	cp, _, _, err := log.ParseCheckpoint(raw, v.Name(), v)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	return cp.Size
}

// logRecordIDs reads every leaf of the live log (at its checkpoint) and
// counts each record id.
func logRecordIDs(t *testing.T, s *server, tok, keyPath string) (map[string]int, uint64) {
	t.Helper()
	size := checkpointSize(t, s, tok, keyPath)
	u, _ := url.Parse(s.url + "/")
	f, err := client.NewHTTPFetcher(u, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	f.SetAuthorizationHeader("Bearer " + tok)
	counts := map[string]int{}
	ctx := ctxT(t, 60e9)
	for i := uint64(0); i*layout.EntryBundleWidth < size; i++ {
		b, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, i, size)
		if err != nil {
			t.Fatalf("entry bundle %d: %v", i, err)
		}
		for _, e := range b.Entries {
			var r struct {
				RecordID string `json:"record_id"`
			}
			if err := json.Unmarshal(e, &r); err != nil {
				t.Fatalf("leaf is not a record: %v", err)
			}
			counts[r.RecordID]++
		}
	}
	return counts, size
}
