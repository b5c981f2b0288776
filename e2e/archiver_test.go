package e2e

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// realisticRecords are records whose ids, digests and trace ids are
// random, as in production: they do not compress.
func realisticRecords(n int) ([]string, []map[string]any) {
	idList := make([]string, n)
	recs := make([]map[string]any, n)
	for i := range recs {
		idList[i] = uuid.NewString()
		r := record(idList[i])
		r["args_sha256"] = randomHex(32)
		r["result_sha256"] = randomHex(32)
		r["trace"] = map[string]any{"trace_id": randomHex(16), "span_id": randomHex(8)}
		r["mcp"] = map[string]any{"method": "tools/call", "session_id": uuid.NewString(), "request_id": fmt.Sprint(i), "transport": "http"}
		recs[i] = r
	}
	return idList, recs
}

type indexEntry struct {
	File     string `json:"file"`
	From     uint64 `json:"from"`
	To       uint64 `json:"to"`
	TreeSize uint64 `json:"tree_size"`
	SHA256   string `json:"sha256"`
}

func readIndex(dir string) []indexEntry {
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil
	}
	var idx []indexEntry
	if json.Unmarshal(raw, &idx) != nil {
		return nil
	}
	return idx
}

// entryBytes is the size of the entry bundles inside an archive, the
// records as the log stores them uncompressed.
func entryBytes(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "tile/entries/") {
			n += int(h.Size)
		}
	}
}

// TestScheduledArchives: serve --archive-dir writes one archive per period
// of the entry bundles completed since the last, listed in index.json;
// archive N ends where N+1 starts, --archive-keep removes the oldest,
// each archive verifies offline and proves its checkpoint extends the
// previous archive's. On realistic records (random ids and
// digests) an archive takes at most 40% of the raw entry bundles' bytes.
func TestScheduledArchives(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(t.TempDir(), "archives")
	s := startServer(t, data, "--roles", "ingest,signer", "--archive-dir", dir, "--archive-every", "200ms", "--archive-keep", "2")
	keyPath := filepath.Join(data, "keys", "log.pub")
	tok := s.token("gw", "ingest", "1h")
	queryTok := s.token("auditor", "query", "1h")

	for round, want := range []uint64{256, 512, 768} {
		idList, recs := realisticRecords(300)
		code, _, pr, err := s.post(tok, jsonArray(t, recs...), nil)
		if err != nil || code != 202 || pr.Accepted != 300 {
			t.Fatalf("round %d: post: %d %+v %v", round, code, pr, err)
		}
		s.waitProof(queryTok, idList[299])
		waitFor(t, fmt.Sprintf("an archive up to leaf %d", want), func() (bool, string) {
			idx := readIndex(dir)
			return len(idx) > 0 && idx[len(idx)-1].To == want, fmt.Sprint(idx)
		})
	}
	idx := readIndex(dir)
	if len(idx) != 2 || idx[0].From != 256 || idx[0].To != 512 || idx[1].From != 512 || idx[1].To != 768 {
		t.Fatalf("index after three archives with --archive-keep 2: %+v, want [256,512) and [512,768)", idx)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*.tar.zst"))
	if len(names) != 2 {
		t.Fatalf("archive dir holds %v, want the two listed archives", names)
	}
	for _, e := range idx {
		p := filepath.Join(dir, e.File)
		out, errOut, code := cli(t, "verify", "--archive", p, "--key", keyPath)
		if code != 0 || !strings.Contains(out, fmt.Sprintf("leaves %d to %d: 256 records proven", e.From, e.To-1)) {
			t.Fatalf("verify %s: exit %d: %s%s", e.File, code, out, errOut)
		}
	}
	// Each archive proves its checkpoint extends the previous one's, so
	// the run of archives is one history.
	out, errOut, code := cli(t, "verify", "--archive", filepath.Join(dir, idx[1].File), "--previous", filepath.Join(dir, idx[0].File), "--key", keyPath)
	if want := fmt.Sprintf("extends the earlier checkpoint at size %d", idx[0].TreeSize); code != 0 || !strings.Contains(out, want) {
		t.Fatalf("verify the last archive --previous the one before: exit %d, want 0 and %q: %s%s", code, want, out, errOut)
	}
	p := filepath.Join(dir, idx[1].File)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	raw := entryBytes(t, p)
	ratio := float64(st.Size()) / float64(raw)
	t.Logf("archive of 256 realistic records: %d bytes (%.0f B/record) for %d bytes of entry bundles (%.0f B/record): %.1f%%",
		st.Size(), float64(st.Size())/256, raw, float64(raw)/256, 100*ratio)
	if ratio > 0.40 {
		t.Fatalf("the archive is %.1f%% of the raw entries, want at most 40%%", 100*ratio)
	}
}
