package outbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/ingest/publish"
)

// TestSecondOpenOfASpoolFails: a spool has one writer. A second Open of
// the same SpoolPath, from this process or another, fails with an error
// that names the spool and the process holding it; once the holder
// closes, the spool opens again.
func TestSecondOpenOfASpoolFails(t *testing.T) {
	n := startNATS(t)
	b := openBus(t, n.url())
	spool := filepath.Join(t.TempDir(), "spool")
	cfg := Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: spool, Logger: slog.New(slog.DiscardHandler)}
	first, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(cfg)
	if !errors.Is(err, ErrSpoolLocked) {
		t.Fatalf("second Open of %s: %v, want ErrSpoolLocked", spool, err)
	}
	var locked *SpoolLockedError
	if !errors.As(err, &locked) || locked.Path != spool || locked.Holder.PID != os.Getpid() {
		t.Fatalf("second Open: %#v", err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{spool, "pid " + strconv.Itoa(os.Getpid()), host} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := open(t, cfg)
	if again.SpoolPath() != spool {
		t.Fatalf("SpoolPath() = %s", again.SpoolPath())
	}
}

func TestConfigValidate(t *testing.T) {
	pub := publish.NewPublisher(nil)
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"dir", Config{Publisher: pub, SpoolDir: "d"}, true},
		{"path", Config{Publisher: pub, SpoolPath: "p"}, true},
		{"no spool", Config{Publisher: pub}, false},
		{"both", Config{Publisher: pub, SpoolDir: "d", SpoolPath: "p"}, false},
		{"no publisher", Config{SpoolDir: "d"}, false},
		{"negative", Config{Publisher: pub, SpoolDir: "d", AdoptInterval: -1}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", tc.name, err)
		}
	}
}

// spoolFiles lists the spool files (not lock files) in dir.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestSpoolDirAdoptsSpoolsOfEndedProcesses: with SpoolDir each outbox has
// a spool of its own; one that closes with records still spooled leaves
// its spool behind, a live outbox on the same directory adopts it and
// drains it once NATS is back, and every emptied spool is removed.
func TestSpoolDirAdoptsSpoolsOfEndedProcesses(t *testing.T) {
	n := startNATS(t)
	b := openBus(t, n.url())
	pub := publish.NewPublisher(b.JS)
	n.stop()
	waitFor(t, "the client to notice", func() bool { return !pub.Connected() })
	dir := filepath.Join(t.TempDir(), "spools")
	cfg := Config{Publisher: pub, SpoolDir: dir, PublishTimeout: 100 * time.Millisecond,
		RetryInterval: 50 * time.Millisecond, AdoptInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	ended, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	alive := open(t, cfg)
	if ended.SpoolPath() == alive.SpoolPath() || filepath.Dir(ended.SpoolPath()) != dir {
		t.Fatalf("spools %s and %s", ended.SpoolPath(), alive.SpoolPath())
	}
	for i := range 100 {
		o := ended
		if i%2 == 1 {
			o = alive
		}
		if err := o.Enqueue(msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both halves spooled", func() bool {
		return ended.Stats().Spooled == 50 && alive.Stats().Spooled == 50
	})
	// A live outbox's spool is not adopted.
	if st := alive.Stats(); st.AdoptedBytes != 0 {
		t.Fatalf("adopted the spool of a live outbox: %+v", st)
	}
	if err := ended.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ended.SpoolPath()); err != nil {
		t.Fatalf("the spool of a closed outbox with records in it: %v", err)
	}
	waitFor(t, "the ended outbox's spool adopted", func() bool { return alive.Stats().AdoptedBytes > 0 })

	n.start()
	waitFor(t, "100 in the stream", func() bool { return len(streamIDs(t, b.JS)) >= 100 })
	waitFor(t, "the adopted spool removed", func() bool { return len(spoolFiles(t, dir)) == 1 })
	assertOnce(t, streamIDs(t, b.JS), 100, "rec-%05d")
	waitFor(t, "own spool drained", func() bool { return alive.Stats().SpoolBytes == 0 })
	if err := alive.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("spool directory after every outbox drained and closed: %v", entries)
	}
}

// assertOnce checks ids holds exactly the want ids fmt.Sprintf(format, i)
// for i < want, each once.
func assertOnce(t *testing.T, ids []string, want int, format string) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	var missing, twice []string
	for i := range want {
		id := fmt.Sprintf(format, i)
		switch seen[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			twice = append(twice, id)
		}
		delete(seen, id)
	}
	if len(missing) > 0 || len(twice) > 0 || len(seen) > 0 || len(ids) != want {
		t.Fatalf("stream holds %d records, want %d once each: %d missing (%.5v), %d twice (%.5v), unexpected %v",
			len(ids), want, len(missing), missing, len(twice), twice, seen)
	}
}

// The helper process of TestTwoProcessesShareASpoolDir: a producer in a
// process of its own, as an MCP host starts one stdio server per session.
// It connects to NATS (down at first), enqueues its records into an outbox
// on the shared spool directory, prints "spooled" once all of them are on
// disk, and closes when its stdin closes.
const helperEnv = "OUTBOX_TEST_HELPER"

func TestSpoolHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process for TestTwoProcessesShareASpoolDir")
	}
	if err := helperProcess(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

func helperProcess() error {
	from, _ := strconv.Atoi(os.Getenv("OUTBOX_FROM"))
	count, _ := strconv.Atoi(os.Getenv("OUTBOX_COUNT"))
	nc, err := nats.Connect(os.Getenv("OUTBOX_NATS"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	o, err := Open(Config{Publisher: publish.NewPublisher(js), SpoolDir: os.Getenv("OUTBOX_DIR"),
		PublishTimeout: 200 * time.Millisecond, RetryInterval: 50 * time.Millisecond, AdoptInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	for i := from; i < from+count; i++ {
		if err := o.Enqueue(msg(i)); err != nil {
			return err
		}
	}
	for o.Stats().Spooled < uint64(count) {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("spooled")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the test closes stdin
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Close(ctx); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(o.Stats())
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin interface{ Close() error }
	out   *bufio.Reader
}

func startHelper(t *testing.T, natsURL, dir string, from, count int) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSpoolHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "OUTBOX_NATS="+natsURL, "OUTBOX_DIR="+dir,
		"OUTBOX_FROM="+strconv.Itoa(from), "OUTBOX_COUNT="+strconv.Itoa(count))
	// Its logs, shown if the test fails.
	logPath := filepath.Join(t.TempDir(), "helper.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("helper %d (records %d..%d) log:\n%s", cmd.Process.Pid, from, from+count-1, b)
		}
	})
	return h
}

// waitLine reads the helper's stdout up to a line holding want.
func (h *helper) waitLine(t *testing.T, want string) string {
	t.Helper()
	for {
		line, err := h.out.ReadString('\n')
		if strings.Contains(line, want) {
			return line
		}
		if err != nil {
			t.Fatalf("helper pid %d ended before %q: %v", h.cmd.Process.Pid, want, err)
		}
	}
}

// stop closes the helper's stdin, so that it closes its outbox and exits,
// and returns its final stats.
func (h *helper) stop(t *testing.T) Stats {
	t.Helper()
	_ = h.stdin.Close()
	var st Stats
	line := h.waitLine(t, "{")
	if err := json.Unmarshal([]byte(line), &st); err != nil {
		t.Fatalf("helper stats %q: %v", line, err)
	}
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	return st
}

// TestTwoProcessesShareASpoolDir reproduces issue 9's loss with real
// processes: two producers on one spool directory while NATS is down (200
// records each, all spooled), one of them ends before NATS is back. Each
// process writes a spool of its own, the survivor adopts the ended one's,
// and once NATS is back all 400 records are in the stream, once each.
func TestTwoProcessesShareASpoolDir(t *testing.T) {
	n := startNATS(t)
	b := openBus(t, n.url()) // creates the stream; reconnects after the restart
	n.stop()
	dir := filepath.Join(t.TempDir(), "spools")
	first := startHelper(t, n.url(), dir, 0, 200)
	second := startHelper(t, n.url(), dir, 200, 200)
	first.waitLine(t, "spooled")
	second.waitLine(t, "spooled")
	files := spoolFiles(t, dir)
	if len(files) != 2 {
		t.Fatalf("%d spool files for two processes: %v", len(files), files)
	}
	// Each is locked by its process: opening one from here names it.
	_, err := Open(Config{Publisher: publish.NewPublisher(b.JS), SpoolPath: filepath.Join(dir, files[0]), Logger: slog.New(slog.DiscardHandler)})
	var locked *SpoolLockedError
	if !errors.As(err, &locked) || (locked.Holder.PID != first.cmd.Process.Pid && locked.Holder.PID != second.cmd.Process.Pid) ||
		!strings.Contains(err.Error(), "pid "+strconv.Itoa(locked.Holder.PID)) {
		t.Fatalf("Open of %s, held by a helper process: %v", files[0], err)
	}

	// The first process ends with its records still spooled.
	if st := first.stop(t); st.Spooled != 200 || st.Published != 0 {
		t.Fatalf("first process: %+v", st)
	}

	n.start()
	waitFor(t, "400 records in the stream", func() bool { return len(streamIDs(t, b.JS)) >= 400 })
	assertOnce(t, streamIDs(t, b.JS), 400, "rec-%05d")
	st := second.stop(t)
	if st.Published != 400 || st.Dropped != 0 {
		t.Fatalf("second process published its own and the adopted records: %+v, want 400 published", st)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("spool directory after both processes: %v", entries)
	}
}
