package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestArchive takes evidence archives of a live log (from its data
// directory and over HTTP), checks they are byte-for-byte reproducible and
// verify offline, whole or for one record, and that flipping any one of
// every 97th byte of an archive makes verify fail.
func TestArchive(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, "--roles", "ingest,signer")
	keyPath := filepath.Join(data, "keys", "log.pub")
	tok := s.token("gw", "ingest", "1h")
	queryTok := s.token("auditor", "query", "1h")
	all := ids("arch", 300)
	for i := 0; i < len(all); i += 100 {
		s.mustPost(tok, all[i:i+100])
	}
	s.waitProof(queryTok, all[299])
	if size := checkpointSize(t, s, queryTok, keyPath); size != 300 {
		t.Fatalf("checkpoint size %d, want 300", size)
	}
	dir := t.TempDir()
	archive := func(name string, args ...string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		out, errOut, code := cli(t, append([]string{"archive", "--out", p}, args...)...)
		if code != 0 {
			t.Fatalf("archive %v: exit %d: %s%s", args, code, out, errOut)
		}
		return p
	}
	verifyArchive := func(p string, args ...string) (string, int) {
		t.Helper()
		out, errOut, code := cli(t, append([]string{"verify", "--archive", p, "--key", keyPath}, args...)...)
		return out + errOut, code
	}

	whole := archive("whole.tar.zst", "--data", data)
	if out, code := verifyArchive(whole); code != 0 || !strings.Contains(out, "leaves 0 to 299: 300 records proven") {
		t.Fatalf("verify whole archive: exit %d: %s", code, out)
	}
	// The range is rounded out to whole entry bundles: leaves 256..299.
	tail := archive("tail.tar.zst", "--data", data, "--from", "260", "--to", "300")
	again := archive("tail-again.tar.zst", "--data", data, "--from", "260", "--to", "300")
	overHTTP := archive("tail-http.tar.zst", "--log", s.url, "--key", keyPath, "--token", queryTok, "--from", "260")
	tailBytes, _ := os.ReadFile(tail)
	for _, p := range []string{again, overHTTP} {
		if b, _ := os.ReadFile(p); !bytes.Equal(b, tailBytes) {
			t.Fatalf("%s differs from %s: archives of one range are not reproducible", filepath.Base(p), filepath.Base(tail))
		}
	}
	if out, code := verifyArchive(tail); code != 0 || !strings.Contains(out, "leaves 256 to 299: 44 records proven") {
		t.Fatalf("verify tail archive: exit %d: %s", code, out)
	}
	if out, code := verifyArchive(tail, "--record", all[280]); code != 0 || !strings.Contains(out, "record "+all[280]+" is leaf 280") {
		t.Fatalf("verify one record of the archive: exit %d: %s", code, out)
	}
	if out, code := verifyArchive(tail, "--record", all[3]); code != 1 || !strings.Contains(out, "not in the archive") {
		t.Fatalf("verify a record outside the archive: exit %d, want 1: %s", code, out)
	}
	otherKey := filepath.Join(t.TempDir(), "keys")
	if _, errOut, code := cli(t, "keygen", "--origin", "e2e.proofline.test/log", "--out", otherKey); code != 0 {
		t.Fatal(errOut)
	}
	if out, errOut, code := cli(t, "verify", "--archive", tail, "--key", filepath.Join(otherKey, "log.pub")); code != 1 {
		t.Fatalf("verify with another key of the same origin: exit %d, want 1: %s%s", code, out, errOut)
	}

	// Tampering: every 97th byte flipped, one at a time.
	flipped := filepath.Join(dir, "flipped.tar.zst")
	tried := 0
	for i := 0; i < len(tailBytes); i += 97 {
		b := bytes.Clone(tailBytes)
		b[i] ^= 0x01
		if err := os.WriteFile(flipped, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, code := verifyArchive(flipped)
		if code != 1 {
			t.Fatalf("byte %d of %d flipped: verify exit %d, want 1: %s", i, len(tailBytes), code, out)
		}
		tried++
	}
	t.Logf("%d flipped archives of %d bytes rejected", tried, len(tailBytes))
}
