package ingest

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

func TestDefaultDecodeBudget(t *testing.T) {
	for _, c := range []struct{ mem, want int64 }{
		{24 << 30, 2 << 30},   // the 24 GiB machine: capped at 2 GiB
		{8 << 30, 1 << 30},    // an eighth
		{512 << 20, 64 << 20}, // a 512 MiB container: the floor
		{0, 64 << 20},         // unknown
	} {
		if got := DefaultDecodeBudget(c.mem); got != c.want {
			t.Errorf("DefaultDecodeBudget(%d) = %d, want %d", c.mem, got, c.want)
		}
	}
}

func TestCgroupMemoryLimit(t *testing.T) {
	write := func(root, path, content string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	container := t.TempDir()
	write(container, "proc/self/cgroup", "0::/\n")
	write(container, "sys/fs/cgroup/memory.max", "536870912\n")
	nested := t.TempDir()
	write(nested, "proc/self/cgroup", "0::/system.slice/proofline.service\n")
	write(nested, "sys/fs/cgroup/memory.max", "max\n")
	write(nested, "sys/fs/cgroup/system.slice/proofline.service/memory.max", "1073741824\n")
	unlimited := t.TempDir()
	write(unlimited, "proc/self/cgroup", "0::/\n")
	write(unlimited, "sys/fs/cgroup/memory.max", "max\n")
	for name, c := range map[string]struct {
		root string
		want int64
	}{"container": {container, 512 << 20}, "service cgroup": {nested, 1 << 30}, "no limit": {unlimited, 0}, "no cgroup": {t.TempDir(), 0}} {
		if got := cgroupMemoryLimit(c.root); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
}

// TestBudgetBoundsConcurrentBodies: while the budget is taken, a body
// waits at most the budget's wait and is refused with errOverBudget; once
// it is given back the same body is read, and everything it took is
// given back when it ends.
func TestBudgetBoundsConcurrentBodies(t *testing.T) {
	b, err := NewBudget(MinDecodeBudget, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithWindowSize(8<<20))
	payload := bytes.Repeat([]byte(`{"record_id":"x"}`+"\n"), 1000)
	body := enc.EncodeAll(payload, nil)
	read := func() error {
		r := httptest.NewRequest("POST", "/v1/records", bytes.NewReader(body))
		r.Header.Set("Content-Encoding", "zstd")
		c := b.start()
		defer c.release()
		_, err := readBody(context.Background(), r, 16<<20, c)
		return err
	}
	hog := b.start()
	if err := hog.take(context.Background(), MinDecodeBudget-1<<20); err != nil {
		t.Fatal(err)
	}
	if err := read(); !errors.Is(err, errOverBudget) {
		t.Fatalf("read with the budget taken: %v, want errOverBudget", err)
	}
	hog.release()
	if err := read(); err != nil {
		t.Fatalf("read with the budget free: %v", err)
	}
	if !b.sem.TryAcquire(MinDecodeBudget) {
		t.Fatal("a finished request kept part of the budget")
	}
}

// TestZstdWindowIsBounded: a frame may not ask for a window larger than a
// body may be, and no later frame may ask for more than the first.
func TestZstdWindowIsBounded(t *testing.T) {
	// frame is a zstd frame declaring a window of 1<<windowLog bytes
	// with n bytes in one raw block, made by hand: encoders shrink the
	// window to small inputs, and an attacker's frame need not.
	frame := func(windowLog int, n int) []byte {
		out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte((windowLog - 10) << 3)}
		h := 1 | n<<3 // last block, raw, n bytes
		out = append(out, byte(h), byte(h>>8), byte(h>>16))
		return append(out, bytes.Repeat([]byte("x"), n)...)
	}
	for _, c := range []struct {
		name  string
		body  []byte
		limit int64
		err   error
	}{
		{"window over the limit", frame(25, 100), 16 << 20, errTooLarge},
		{"later frame with a larger window", append(frame(20, 100), frame(23, 100)...), 16 << 20, errBadCompression},
		{"frames within the first window", append(frame(23, 100), frame(20, 100)...), 16 << 20, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/records", bytes.NewReader(c.body))
			r.Header.Set("Content-Encoding", "zstd")
			_, err := readBody(context.Background(), r, c.limit, (*Budget)(nil).start())
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
		})
	}
}
