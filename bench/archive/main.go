// Command archive measures an evidence archive's size against the raw
// entries it holds: it writes a real tessera log of realistic call records
// (random UUIDv7 ids, random SHA-256 digests and W3C ids, the shapes a
// gateway sends), runs `proofline archive` over it, checks the archive
// with `proofline verify --archive`, and reports bytes per record for the
// archive and for the uncompressed entry bundles.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/bench/internal/gen"
	"github.com/proofline/proofline/ledger"
)

var tools = []string{"search_tickets", "create_ticket", "get_page", "send_email", "transfer_funds", "list_files", "read_file", "query_db"}

func main() {
	n := flag.Int("records", 100000, "records in the log")
	bin := flag.String("proofline", "bin/proofline", "the proofline binary")
	flag.Parse()
	if err := run(*n, *bin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(n int, bin string) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "bench-archive")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	skey, vkey, _ := note.GenerateKey(rand.Reader, "bench.proofline/archive")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "keys", "log.pub"), []byte(vkey+"\n"), 0o600); err != nil {
		return err
	}
	l, err := ledger.Open(ctx, ledger.Config{Dir: dir, Signer: s, Verifier: v, BatchMaxAge: 20 * time.Millisecond,
		CheckpointInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	raw := 0
	start := time.Now().Add(-time.Hour)
	for off := 0; off < n; off += 10000 {
		var es []ledger.Entry
		for i := off; i < min(off+10000, n); i++ {
			ts := start.Add(time.Duration(i) * time.Millisecond)
			id := uuid.Must(uuid.NewV7()).String()
			b, _ := json.Marshal(map[string]any{
				"record_id": id, "ts_start": ts.UTC().Format(time.RFC3339Nano), "ts_end": ts.Add(time.Duration(20+i%300) * time.Millisecond).UTC().Format(time.RFC3339Nano),
				"actor":       map[string]any{"id": fmt.Sprintf("agent-%d", i%50), "type": "agent", "on_behalf_of": fmt.Sprintf("user%d@example.com", i%200)},
				"tool":        map[string]any{"name": tools[i%len(tools)], "server": fmt.Sprintf("mcp-%d", i%8), "version": "1.4.2", "group": "ops"},
				"policy":      map[string]any{"decision": "allow"},
				"outcome":     map[string]any{"status": "ok"},
				"mcp":         map[string]any{"method": "tools/call", "session_id": gen.RandHex(16), "request_id": fmt.Sprint(i), "transport": "http"},
				"trace":       map[string]any{"trace_id": gen.RandHex(16), "span_id": gen.RandHex(8)},
				"args_sha256": gen.RandHex(32), "result_sha256": gen.RandHex(32), "ingested_by": "gw-1",
			})
			raw += len(b)
			es = append(es, ledger.Entry{ID: id, Data: b})
		}
		if _, err := l.Append(ctx, es); err != nil {
			return err
		}
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if cp, _, err := l.Checkpoint(ctx); err == nil && cp.Size == uint64(n) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no checkpoint at %d", n)
		}
	}
	if err := l.Close(ctx); err != nil {
		return err
	}
	bundles := int64(0)
	filepath.Walk(filepath.Join(dir, "log", "tile", "entries"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			bundles += fi.Size()
		}
		return nil
	})
	out := filepath.Join(dir, "range.tar.zst")
	t0 := time.Now()
	if b, err := exec.Command(bin, "archive", "--data", dir, "--out", out).CombinedOutput(); err != nil {
		return fmt.Errorf("proofline archive: %v\n%s", err, b)
	}
	took := time.Since(t0)
	if b, err := exec.Command(bin, "verify", "--archive", out, "--key", filepath.Join(dir, "keys", "log.pub")).CombinedOutput(); err != nil {
		return fmt.Errorf("proofline verify --archive: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("records %d; canonical leaves %.1f B/record; entry bundles on disk %.1f B/record\n", n, float64(raw)/float64(n), float64(bundles)/float64(n))
	fmt.Printf("archive (entries + proof tiles + checkpoint + key) %.1f B/record = %.1f%% of the uncompressed entry bundles; written in %s, verified offline\n",
		float64(fi.Size())/float64(n), 100*float64(fi.Size())/float64(bundles), took.Round(time.Millisecond))
	return nil
}
