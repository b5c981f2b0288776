package filesink_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/filesink"
	"github.com/proofline/proofline/ledger"
)

// decode reads a file with the zstd command-line tool (Debian's zstd, not
// the library that wrote it) and returns its lines.
func decode(t *testing.T, path string) []string {
	t.Helper()
	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		t.Fatal("the zstd CLI is missing: scripts/setup.sh installs Debian's zstd")
	}
	out, err := exec.Command(zstdBin, "-dc", path).Output()
	if err != nil {
		t.Fatalf("zstd -dc %s: %v", path, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestFilesCarryEveryLeafAndCloseWithACheckpoint(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "files.test/log")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	l, err := ledger.Open(context.Background(), ledger.Config{Dir: t.TempDir(), Signer: s, Verifier: v,
		BatchMaxAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	const n = 1200
	es := make([]ledger.Entry, n)
	for i := range es {
		id := fmt.Sprintf("rec-%05d", i)
		es[i] = ledger.Entry{ID: id, Data: []byte(fmt.Sprintf(`{"record_id":%q,"tool":{"name":"search"}}`, id))}
	}
	if _, err := l.Append(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if cp, _, err := l.Checkpoint(context.Background()); err == nil && cp.Size == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint at size n")
		}
		time.Sleep(10 * time.Millisecond)
	}

	out := t.TempDir()
	sink, err := filesink.New(filesink.Config{Dir: out, MaxBytes: 20 << 10})
	if err != nil {
		t.Fatal(err)
	}
	st, err := exporters.OpenStateDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := exporters.New(exporters.Config{Source: exporters.NewFileSource(l.TilesDir(), v), State: st,
		Sinks: []exporters.SinkSpec{{Name: "lake", Sink: sink, BatchSize: 100}}, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline = time.Now().Add(20 * time.Second)
	for {
		c, _ := exporters.LoadCursor(st.Dir(), "lake")
		if c.Next == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor at %d", c.Next)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	files, _ := filepath.Glob(filepath.Join(out, "*.ndjson.zst"))
	if len(files) < 3 {
		t.Fatalf("%d files: rotation by size did not happen", len(files))
	}
	if open, _ := filepath.Glob(filepath.Join(out, "*.open")); len(open) != 0 {
		t.Fatalf("files left open after Close: %v", open)
	}
	slices.Sort(files)
	var leaves []uint64
	for _, f := range files {
		lines := decode(t, f)
		var last uint64
		for i, line := range lines {
			var ev struct {
				Type       string             `json:"type"`
				Evidence   exporters.Evidence `json:"evidence"`
				Record     json.RawMessage    `json:"record"`
				TreeSize   uint64             `json:"tree_size"`
				Checkpoint string             `json:"checkpoint"`
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("%s line %d: %v", f, i, err)
			}
			if i < len(lines)-1 {
				if ev.Type != exporters.TypeCall || !strings.Contains(string(ev.Record), ev.Evidence.RecordID) {
					t.Fatalf("%s line %d is not a call event: %s", f, i, line)
				}
				leaves = append(leaves, ev.Evidence.LeafIndex)
				last = ev.Evidence.LeafIndex
				continue
			}
			// The last line of a closed file is the checkpoint covering it.
			if ev.Type != exporters.TypeCheckpoint || ev.TreeSize <= last {
				t.Fatalf("%s does not end with a checkpoint covering leaf %d: %s", f, last, line)
			}
			if _, err := note.Open([]byte(ev.Checkpoint), note.VerifierList(v)); err != nil {
				t.Fatalf("%s: checkpoint does not verify: %v", f, err)
			}
		}
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", f, fi.Mode().Perm())
		}
	}
	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i)
	}
	if !slices.Equal(leaves, want) {
		t.Fatalf("files hold %d leaves, not 0..%d once each in order", len(leaves), n-1)
	}
}

func TestTornFileIsRecoveredOnOpen(t *testing.T) {
	dir := t.TempDir()
	sink, err := filesink.New(filesink.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(i uint64) exporters.Event {
		id := fmt.Sprintf("r-%d", i)
		return exporters.Event{Evidence: exporters.Evidence{Origin: "o", LeafIndex: i, TreeSize: 100, RecordID: id},
			Record: []byte(fmt.Sprintf(`{"record_id":%q}`, id))}
	}
	for i := uint64(0); i < 4; i++ {
		if err := sink.Send(context.Background(), exporters.Batch{Events: []exporters.Event{ev(2 * i), ev(2*i + 1)}}); err != nil {
			t.Fatal(err)
		}
	}
	// Simulate a crash in the middle of the fifth write: a torn frame at the end.
	open, _ := filepath.Glob(filepath.Join(dir, "*.open"))
	if len(open) != 1 {
		t.Fatalf("open files: %v", open)
	}
	f, _ := os.OpenFile(open[0], os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x01}) // a frame header and nothing more
	f.Close()

	if _, err := filesink.New(filesink.Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	closed, _ := filepath.Glob(filepath.Join(dir, "*.ndjson.zst"))
	if len(closed) != 1 {
		t.Fatalf("recovered files: %v", closed)
	}
	if lines := decode(t, closed[0]); len(lines) != 8 {
		t.Fatalf("recovered %d lines, want the 8 acknowledged", len(lines))
	}
}

// TestAnEventItCannotEncodeIsRefusedAlone: an event the configured
// encoding fails on is reported by its index (for the dead-letter file),
// and the batch's other events are written whole, in order, also across
// batches that reuse the sink's buffers.
func TestAnEventItCannotEncodeIsRefusedAlone(t *testing.T) {
	out := t.TempDir()
	sink, err := filesink.New(filesink.Config{Dir: out, MaxBytes: 1 << 30, Encode: func(e exporters.Event) ([]byte, error) {
		if strings.Contains(string(e.Record), "poison") {
			return []byte("half a li"), fmt.Errorf("cannot encode")
		}
		return exporters.EncodeNative(e)
	}})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for batch := range 3 {
		var b exporters.Batch
		for i := range 4 {
			leaf := uint64(batch*4 + i)
			rec := fmt.Sprintf(`{"record_id":"r%d"}`, leaf)
			if i == 1 {
				rec = fmt.Sprintf(`{"record_id":"r%d","poison":true}`, leaf)
			} else {
				want = append(want, fmt.Sprintf("r%d", leaf))
			}
			b.Events = append(b.Events, exporters.Event{Evidence: exporters.Evidence{Origin: "o", LeafIndex: leaf, TreeSize: 12, RecordID: fmt.Sprintf("r%d", leaf)}, Record: []byte(rec)})
		}
		err := sink.Send(context.Background(), b)
		var rej *exporters.RejectedError
		if !errors.As(err, &rej) || len(rej.Reasons) != 1 || rej.Reasons[1] == "" {
			t.Fatalf("batch %d: Send = %v, want event 1 refused", batch, err)
		}
	}
	if err := sink.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(out, "*.ndjson.zst"))
	if len(files) != 1 {
		t.Fatalf("files %v, want one", files)
	}
	var got []string
	for _, line := range decode(t, files[0]) {
		var ev exporters.NativeEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if ev.Type == exporters.TypeCall {
			got = append(got, ev.Evidence.RecordID)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("file holds %v, want %v", got, want)
	}
}
