package e2e

import (
	"bytes"
	"os"
	"os/exec"
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

// TestArchiveChain: an archive taken with --previous carries the earlier
// archive's checkpoint and a consistency proof to its own, and verify
// --previous links the two; a copy of the log that went its own way (a
// fork signed with the same key) makes no archive linked to the real
// log's, and every 97th byte of a linked archive flipped fails verify.
func TestArchiveChain(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	s := startServer(t, data, "--roles", "ingest,signer")
	keyPath := filepath.Join(data, "keys", "log.pub")
	post(t, s, "chain", 300)
	s.stop()
	fork := filepath.Join(t.TempDir(), "fork")
	if out, err := exec.Command("cp", "-r", data, fork).CombinedOutput(); err != nil {
		t.Fatalf("cp -r: %v %s", err, out)
	}

	dir := t.TempDir()
	archive := func(name string, args ...string) (string, string, int) {
		t.Helper()
		p := filepath.Join(dir, name)
		out, errOut, code := cli(t, append([]string{"archive", "--out", p}, args...)...)
		return p, out + errOut, code
	}
	verifyArchive := func(p string, args ...string) (string, int) {
		t.Helper()
		out, errOut, code := cli(t, append([]string{"verify", "--archive", p, "--key", keyPath}, args...)...)
		return out + errOut, code
	}
	first, out, code := archive("first.tar.zst", "--data", data)
	if code != 0 {
		t.Fatalf("archive: exit %d: %s", code, out)
	}

	// The real log grows by 50 records, the fork by 100 others.
	real := startServer(t, data, "--roles", "ingest,signer")
	post(t, real, "real", 50)
	forked := startServer(t, fork, "--roles", "ingest,signer")
	post(t, forked, "forked", 100)

	second, out, code := archive("second.tar.zst", "--data", data, "--from", "300", "--previous", first)
	if code != 0 || !strings.Contains(out, "extends the earlier checkpoint at size 300") {
		t.Fatalf("archive --previous: exit %d: %s", code, out)
	}
	if out, code := verifyArchive(second, "--previous", first); code != 0 || !strings.Contains(out, "leaves 256 to 349: 94 records proven against the checkpoint at size 350") || !strings.Contains(out, "extends the earlier checkpoint at size 300") {
		t.Fatalf("verify --archive second --previous first: exit %d: %s", code, out)
	}
	if out, code := verifyArchive(first, "--previous", second); code != 1 || !strings.Contains(out, "consistency mismatch") {
		t.Fatalf("verify --archive first --previous second: exit %d, want 1 (first links to nothing): %s", code, out)
	}
	forkedArchive, out, code := archive("forked.tar.zst", "--data", fork, "--from", "300", "--previous", first)
	if code != 0 {
		t.Fatalf("the fork extends the tree both logs had at 300, so this links: exit %d: %s", code, out)
	}
	if _, out, code := archive("bad.tar.zst", "--data", fork, "--from", "300", "--previous", second); code != 1 || !strings.Contains(out, "consistency mismatch") {
		t.Fatalf("archive of the fork (400 leaves) after the real log's archive (350): exit %d, want 1: %s", code, out)
	}
	if out, code := verifyArchive(forkedArchive, "--previous", second); code != 1 || !strings.Contains(out, "consistency mismatch") {
		t.Fatalf("verify the fork's archive after the real log's: exit %d, want 1: %s", code, out)
	}
	if _, out, code := archive("bad.tar.zst", "--data", data, "--from", "300", "--previous", forkedArchive); code != 1 || !strings.Contains(out, "rollback mismatch") {
		t.Fatalf("archive of the real log (350 leaves) after the fork's archive (400): exit %d, want 1: %s", code, out)
	}
	post(t, real, "real-more", 50)
	if _, out, code := archive("bad.tar.zst", "--data", data, "--from", "300", "--previous", forkedArchive); code != 1 || !strings.Contains(out, "consistency mismatch") {
		t.Fatalf("archive of the real log (400 leaves) after the fork's archive (400 other leaves): exit %d, want 1: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.tar.zst")); !os.IsNotExist(err) {
		t.Fatalf("a refused archive was written: %v", err)
	}

	secondBytes, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	flipped := filepath.Join(dir, "flipped.tar.zst")
	tried := 0
	for i := 0; i < len(secondBytes); i += 97 {
		b := bytes.Clone(secondBytes)
		b[i] ^= 0x01
		if err := os.WriteFile(flipped, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := verifyArchive(flipped, "--previous", first); code != 1 {
			t.Fatalf("byte %d of %d flipped: verify exit %d, want 1: %s", i, len(secondBytes), code, out)
		}
		tried++
	}
	t.Logf("%d flipped linked archives of %d bytes rejected", tried, len(secondBytes))
}

// post ingests n records named prefix-NNNNN in batches of 100 and waits
// until the last is provable.
func post(t *testing.T, s *server, prefix string, n int) {
	t.Helper()
	tok := s.token("gw", "ingest", "1h")
	all := ids(prefix, n)
	for i := 0; i < n; i += 100 {
		s.mustPost(tok, all[i:min(n, i+100)])
	}
	s.waitProof(s.token("auditor", "query", "1h"), all[n-1])
}
