// Package chdb runs the ClickHouse engine in-process through libchdb, the
// embedded build of ClickHouse, so that proofline needs no ClickHouse
// server by default. The library is loaded at run time with purego — no
// cgo — so the binary builds anywhere and only a process that opens the
// engine needs libchdb.
//
// Nothing in proofline queries chDB directly: Engine.Transport answers
// ClickHouse's HTTP interface, so clickhouse-go/v2 — the same client and
// code path a ClickHouse server gets — runs unchanged against it.
package chdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// DefaultLibPath is where the README's set-up command installs libchdb.
const DefaultLibPath = "/usr/local/lib/chdb/libchdb.so"

// ErrLibraryNotFound means libchdb could not be found or loaded.
var ErrLibraryNotFound = errors.New("libchdb not found: run the README set-up command (scripts/setup.sh installs it to " +
	DefaultLibPath + "), point --chdb-lib or CHDB_LIB_PATH at libchdb.so, or use a ClickHouse server with --clickhouse DSN")

// ErrOtherPath is returned when the process already runs the engine on
// another data directory: libchdb hosts one storage path per process.
var ErrOtherPath = errors.New("chdb: the engine already runs on another data directory in this process")

// Options says where the library and the data are.
type Options struct {
	// LibPath is libchdb.so; empty means $CHDB_LIB_PATH, then DefaultLibPath.
	LibPath string
	// DataDir is the engine's storage path.
	DataDir string
	// Logger hears about repairs made to DataDir before the engine opens
	// (default slog.Default()).
	Logger *slog.Logger
}

// api is the part of libchdb's C API proofline binds (see chdb.h).
type api struct {
	connect         func(argc int32, argv **byte) unsafe.Pointer
	closeConn       func(conn unsafe.Pointer)
	queryN          func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	queryParamsN    func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr, names **byte, nameLens *uintptr, values **byte, valueLens *uintptr, count uintptr) unsafe.Pointer
	resultBuffer    func(res unsafe.Pointer) unsafe.Pointer
	resultLength    func(res unsafe.Pointer) uintptr
	resultError     func(res unsafe.Pointer) string
	destroyResult   func(res unsafe.Pointer)
	setSignalsOnOff func(enabled bool)
}

// process is the one engine a process can host. libchdb keeps global
// state (one storage path per process, an engine booted once); this guard
// mirrors that fact instead of letting a second Open corrupt it.
var process struct {
	mu      sync.Mutex
	lib     *api
	libPath string
	conn    unsafe.Pointer // chdb_connection* from chdb_connect
	path    string
	refs    int
}

// Engine is an open embedded ClickHouse engine.
type Engine struct {
	api  *api
	conn unsafe.Pointer // chdb_connection (the value chdb_connect points to)
	// mu serialises statements: a chDB connection runs one at a time.
	mu     sync.Mutex
	closed bool
	// spoolDir holds INSERT data handed to the engine by file.
	spoolDir string
}

// spool writes INSERT data to a private file for FROM INFILE; cleanup
// removes it.
func (e *Engine) spool(data []byte) (string, func(), error) {
	f, err := os.CreateTemp(e.spoolDir, "insert-*.bin")
	if err != nil {
		return "", nil, fmt.Errorf("chdb spool: %w", err)
	}
	cleanup := func() { _ = os.Remove(f.Name()) }
	if _, err := f.Write(data); err != nil {
		f.Close()
		cleanup()
		return "", nil, fmt.Errorf("chdb spool: %w", err)
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("chdb spool: %w", err)
	}
	return f.Name(), cleanup, nil
}

func resolveLib(p string) string {
	if p != "" {
		return p
	}
	if env := os.Getenv("CHDB_LIB_PATH"); env != "" {
		return env
	}
	return DefaultLibPath
}

func load(path string) (*api, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w (looked for %s)", ErrLibraryNotFound, path)
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrLibraryNotFound, path, err)
	}
	a := &api{}
	for name, fn := range map[string]any{
		"chdb_connect":                     &a.connect,
		"chdb_close_conn":                  &a.closeConn,
		"chdb_query_n":                     &a.queryN,
		"chdb_query_with_params_n":         &a.queryParamsN,
		"chdb_result_buffer":               &a.resultBuffer,
		"chdb_result_length":               &a.resultLength,
		"chdb_result_error":                &a.resultError,
		"chdb_destroy_query_result":        &a.destroyResult,
		"chdb_set_signal_handlers_enabled": &a.setSignalsOnOff,
	} {
		if _, err := purego.Dlsym(h, name); err != nil {
			return nil, fmt.Errorf("%w: %s has no %s (need libchdb 26.x)", ErrLibraryNotFound, path, name)
		}
		purego.RegisterLibFunc(fn, h, name)
	}
	return a, nil
}

// Open starts the engine on opts.DataDir, or shares the one this process
// already runs on the same directory.
func Open(_ context.Context, opts Options) (*Engine, error) {
	if opts.DataDir == "" {
		return nil, errors.New("chdb: DataDir is required")
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("chdb data dir: %w", err)
	}
	process.mu.Lock()
	defer process.mu.Unlock()
	if process.lib == nil {
		lib, err := load(resolveLib(opts.LibPath))
		if err != nil {
			return nil, err
		}
		process.lib, process.libPath = lib, resolveLib(opts.LibPath)
		// Go owns the process's signals (SIGPROF, SIGURG for preemption):
		// the engine must not install handlers over the runtime's.
		lib.setSignalsOnOff(false)
	}
	if process.refs > 0 && process.path != opts.DataDir {
		return nil, fmt.Errorf("%w (%s, asked for %s)", ErrOtherPath, process.path, opts.DataDir)
	}
	if process.refs == 0 {
		fixed, err := relinkStore(opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("chdb data dir: %w", err)
		}
		if len(fixed) > 0 {
			logger := opts.Logger
			if logger == nil {
				logger = slog.Default()
			}
			logger.Warn("chdb data dir had directories where the engine keeps links (copied with links dereferenced?); relinked them to the store", "dir", opts.DataDir, "relinked", fixed)
		}
		args := []string{"clickhouse", "--path=" + opts.DataDir}
		cargs := make([]*byte, len(args))
		keep := make([][]byte, len(args))
		for i, a := range args {
			keep[i] = append([]byte(a), 0)
			cargs[i] = &keep[i][0]
		}
		connPtr := process.lib.connect(int32(len(cargs)), &cargs[0])
		runtime.KeepAlive(keep)
		if connPtr == nil {
			return nil, fmt.Errorf("chdb: connect to %s failed", opts.DataDir)
		}
		process.conn, process.path = connPtr, opts.DataDir
	}
	process.refs++
	spoolDir := filepath.Join(opts.DataDir, "proofline-spool")
	if err := os.MkdirAll(spoolDir, 0o700); err != nil {
		process.refs--
		return nil, fmt.Errorf("chdb spool dir: %w", err)
	}
	return &Engine{api: process.lib, conn: *(*unsafe.Pointer)(process.conn), spoolDir: spoolDir}, nil
}

// Close releases the engine. The engine itself stays up for the life of
// the process: libchdb is built to boot once per process, and shutting it
// down and booting it again is documented to be unsafe.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	process.mu.Lock()
	defer process.mu.Unlock()
	process.refs--
	return nil
}

// QueryError is an error the engine reported for a statement.
type QueryError struct {
	Message string
}

func (e *QueryError) Error() string { return "chdb: " + e.Message }

// Statement is one query for the engine.
type Statement struct {
	// Text is the SQL; data for an INSERT may follow it (binary-safe).
	Text []byte
	// Format is the output format, e.g. Native, TSV, JSONEachRow.
	Format string
	// Params bind {name:Type} placeholders; values never enter the SQL.
	Params map[string]string
	// Settings apply to this statement only.
	Settings map[string]string
}

var settingNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Query runs one statement and returns its output.
func (e *Engine) Query(ctx context.Context, st Statement) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("chdb: engine closed")
	}
	// Settings are set on the connection for this statement and reset
	// after it, under the same lock, so no other statement sees them.
	var applied []string
	defer func() {
		for _, k := range applied {
			_, _ = e.run([]byte("SET "+k+" = DEFAULT"), "TSV", nil)
		}
	}()
	for k, v := range st.Settings {
		if !settingNameRE.MatchString(k) {
			return nil, &QueryError{Message: fmt.Sprintf("Code: 115. DB::Exception: bad setting name %q. (UNKNOWN_SETTING)", k)}
		}
		if _, err := e.run([]byte("SET "+k+" = "+quoteString(v)), "TSV", nil); err != nil {
			return nil, err
		}
		applied = append(applied, k)
	}
	return e.run(st.Text, st.Format, st.Params)
}

// quoteString is a ClickHouse string literal.
func quoteString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

func (e *Engine) run(query []byte, format string, params map[string]string) ([]byte, error) {
	if len(query) == 0 {
		return nil, &QueryError{Message: "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)"}
	}
	f := append([]byte(format), 0)
	var res unsafe.Pointer
	if len(params) == 0 {
		res = e.api.queryN(e.conn, &query[0], uintptr(len(query)), &f[0], uintptr(len(format)))
	} else {
		names, nameLens, values, valueLens, keep := cParams(params)
		res = e.api.queryParamsN(e.conn, &query[0], uintptr(len(query)), &f[0], uintptr(len(format)),
			&names[0], &nameLens[0], &values[0], &valueLens[0], uintptr(len(names)))
		runtime.KeepAlive(keep)
	}
	runtime.KeepAlive(query)
	runtime.KeepAlive(f)
	if res == nil {
		return nil, &QueryError{Message: "the engine returned no result"}
	}
	defer e.api.destroyResult(res)
	if msg := e.api.resultError(res); msg != "" {
		return nil, &QueryError{Message: msg}
	}
	n := e.api.resultLength(res)
	if n == 0 {
		return nil, nil
	}
	buf := e.api.resultBuffer(res)
	return append([]byte(nil), unsafe.Slice((*byte)(buf), n)...), nil
}

func cParams(params map[string]string) (names []*byte, nameLens []uintptr, values []*byte, valueLens []uintptr, keep [][]byte) {
	for k, v := range params {
		kb := append([]byte(k), 0)
		vb := append([]byte(v), 0)
		keep = append(keep, kb, vb)
		names = append(names, &kb[0])
		nameLens = append(nameLens, uintptr(len(k)))
		values = append(values, &vb[0])
		valueLens = append(valueLens, uintptr(len(v)))
	}
	return
}
