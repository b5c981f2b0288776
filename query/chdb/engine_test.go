package chdb

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// sharedDir is the one data directory the engine runs on in this test
// process: libchdb hosts one storage path per process.
var sharedDir = sync.OnceValue(func() string {
	d, err := os.MkdirTemp("", "proofline-chdb-test")
	if err != nil {
		panic(err)
	}
	return d
})

func openTest(t *testing.T) *Engine {
	t.Helper()
	e, err := Open(context.Background(), Options{DataDir: sharedDir()})
	if err != nil {
		t.Fatalf("open chdb: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestQuery(t *testing.T) {
	e := openTest(t)
	ctx := context.Background()
	out, err := e.Query(ctx, Statement{Text: []byte("SELECT 1 + 2, version()"), Format: "CSV"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "3,") {
		t.Fatalf("got %q", out)
	}
	out, err = e.Query(ctx, Statement{Text: []byte("SELECT {a:UInt32} * 2, {s:String}"), Format: "TSV", Params: map[string]string{"a": "21", "s": "x'; DROP TABLE t; --"}})
	if err != nil || string(out) != "42\tx\\'; DROP TABLE t; --\n" {
		t.Fatalf("bound parameters: %q %v", out, err)
	}
	_, err = e.Query(ctx, Statement{Text: []byte("SELECT ("), Format: "CSV"})
	var qe *QueryError
	if !errors.As(err, &qe) || !strings.Contains(qe.Message, "Code: 62") {
		t.Fatalf("syntax error: %v", err)
	}
}

func TestSettingsApplyToOneStatement(t *testing.T) {
	e := openTest(t)
	ctx := context.Background()
	out, err := e.Query(ctx, Statement{Text: []byte("SELECT getSetting('max_threads')"), Format: "TSV", Settings: map[string]string{"max_threads": "3"}})
	if err != nil || string(out) != "3\n" {
		t.Fatalf("with setting: %q %v", out, err)
	}
	out, err = e.Query(ctx, Statement{Text: []byte("SELECT getSetting('max_threads') = 3"), Format: "TSV"})
	if err != nil || string(out) != "0\n" {
		t.Fatalf("setting leaked into the next statement: %q %v", out, err)
	}
	if _, err := e.Query(ctx, Statement{Text: []byte("SELECT 1"), Format: "TSV", Settings: map[string]string{"x = 1; DROP": "1"}}); err == nil {
		t.Fatal("a setting name with SQL in it was accepted")
	}
}

func TestOtherPathRefused(t *testing.T) {
	openTest(t)
	_, err := Open(context.Background(), Options{DataDir: filepath.Join(t.TempDir(), "other")})
	if !errors.Is(err, ErrOtherPath) {
		t.Fatalf("second path: %v, want ErrOtherPath", err)
	}
}

func TestMissingLibrary(t *testing.T) {
	_, err := load(filepath.Join(t.TempDir(), "libchdb.so"))
	if !errors.Is(err, ErrLibraryNotFound) || !strings.Contains(err.Error(), "--clickhouse") {
		t.Fatalf("missing library: %v", err)
	}
}
