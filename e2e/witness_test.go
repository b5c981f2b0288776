package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	f_note "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/witness/persistence/inmemory"
	"github.com/transparency-dev/witness/witness"
	"golang.org/x/mod/sumdb/note"
)

const witnessedOrigin = "e2e.proofline.test/log"

// liteToolsDir is where scripts/setup.sh installs litewitness and
// witnessctl (filippo.io/torchwood v0.6.1).
const liteToolsDir = "/usr/local/lib/proofline-tools/bin"

// testWitness is a witness the tests can stop and start again at the same
// address, keeping what it cosigned.
type testWitness interface {
	name() string
	vkey() string // its cosignature/v1 verifier key
	url() string
	start()
	stop()
}

// goWitness is github.com/transparency-dev/witness (the omniwitness's
// core) with in-memory persistence, served by its own tlog-witness HTTP
// handler in the test process.
type goWitness struct {
	t      *testing.T
	n, vk  string
	addr   string
	mux    *http.ServeMux
	srv    *http.Server
	served chan struct{}
}

func newGoWitness(t *testing.T, name, logVKey string) *goWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := f_note.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	cosigVKey, err := f_note.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	logV, err := note.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	w, err := witness.New(context.Background(), witness.Opts{
		Persistence: inmemory.New(),
		Signers:     []note.Signer{signer},
		VerifierForLog: func(_ context.Context, origin string) (note.Verifier, bool, error) {
			return logV, origin == logV.Name(), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", witness.NewHTTPHandler(w).AddCheckpoint)
	g := &goWitness{t: t, n: name, vk: cosigVKey, addr: freeAddr(t), mux: mux}
	g.start()
	t.Cleanup(g.stop)
	return g
}

func (g *goWitness) name() string { return g.n }
func (g *goWitness) vkey() string { return g.vk }
func (g *goWitness) url() string  { return "http://" + g.addr }

func (g *goWitness) start() {
	g.t.Helper()
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatalf("witness %s: %v", g.n, err)
	}
	g.srv = &http.Server{Handler: g.mux, ReadHeaderTimeout: 10 * time.Second}
	g.served = make(chan struct{})
	go func() { _ = g.srv.Serve(ln); close(g.served) }()
}

func (g *goWitness) stop() {
	if g.srv == nil {
		return
	}
	_ = g.srv.Close()
	<-g.served
	g.srv = nil
}

// liteWitness is litewitness (filippo.io/torchwood) as a separate
// process, its key held by an ssh-agent, the log registered with
// witnessctl.
type liteWitness struct {
	t         *testing.T
	n, vk     string
	addr      string
	dir       string
	agentSock string
	fpr       string
	cmd       *exec.Cmd
	done      chan struct{}
	logPath   string
}

func liteTool(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(liteToolsDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed (run scripts/setup.sh): %v", p, err)
	}
	return p
}

func newLiteWitness(t *testing.T, name, logVKey string) *liteWitness {
	t.Helper()
	dir := t.TempDir()
	lw := &liteWitness{t: t, n: name, addr: freeAddr(t), dir: dir, agentSock: filepath.Join(dir, "agent.sock")}
	run := func(env []string, bin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
		return string(out)
	}
	// The agent in the foreground (-D), so the test owns its process.
	agent := exec.Command("ssh-agent", "-D", "-a", lw.agentSock)
	if err := agent.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(lw.agentSock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent made no socket in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	key := filepath.Join(dir, "witness_key")
	run(nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key)
	run([]string{"SSH_AUTH_SOCK=" + lw.agentSock}, "ssh-add", key)
	fields := strings.Fields(run(nil, "ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub"))
	if len(fields) < 2 {
		t.Fatalf("ssh-keygen -l: %q", fields)
	}
	lw.fpr = fields[1]
	db := filepath.Join(dir, "litewitness.db")
	ctl := liteTool(t, "witnessctl")
	run(nil, ctl, "add-log", "-db", db, "-origin", witnessedOrigin)
	run(nil, ctl, "add-key", "-db", db, "-origin", witnessedOrigin, "-key", logVKey)
	lw.start()
	t.Cleanup(lw.stop)
	return lw
}

func (lw *liteWitness) name() string { return lw.n }
func (lw *liteWitness) vkey() string { return lw.vk }
func (lw *liteWitness) url() string  { return "http://" + lw.addr }

var liteVKey = regexp.MustCompile(`msg="verifier key" vkey=(\S+)`)

func (lw *liteWitness) start() {
	t := lw.t
	t.Helper()
	lw.cmd = exec.Command(liteTool(t, "litewitness"), "-db", filepath.Join(lw.dir, "litewitness.db"),
		"-key", lw.fpr, "-name", lw.n, "-listen", lw.addr, "-ssh-agent", lw.agentSock)
	lw.logPath = filepath.Join(lw.dir, fmt.Sprintf("litewitness-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(lw.logPath)
	if err != nil {
		t.Fatal(err)
	}
	lw.cmd.Stdout, lw.cmd.Stderr = logf, logf
	if err := lw.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lw.done = make(chan struct{})
	go func() { _ = lw.cmd.Wait(); logf.Close(); close(lw.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		raw, _ := os.ReadFile(lw.logPath)
		if m := liteVKey.FindSubmatch(raw); m != nil && strings.Contains(string(raw), "listening") {
			lw.vk = string(m[1])
			return
		}
		select {
		case <-lw.done:
			t.Fatalf("litewitness exited during start-up:\n%s", raw)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("litewitness not listening after 30s:\n%s", raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (lw *liteWitness) stop() {
	if lw.cmd == nil {
		return
	}
	_ = lw.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-lw.done:
	case <-time.After(10 * time.Second):
		_ = lw.cmd.Process.Kill()
		<-lw.done
	}
	lw.cmd = nil
}

// writePolicy writes a witness policy: every witness, and a quorum of
// "threshold" of them.
func writePolicy(t *testing.T, threshold string, ws ...testWitness) string {
	t.Helper()
	var b strings.Builder
	var names []string
	for _, w := range ws {
		fmt.Fprintf(&b, "witness %s %s %s\n", w.name(), w.vkey(), w.url())
		names = append(names, w.name())
	}
	fmt.Fprintf(&b, "group witnesses %s %s\nquorum witnesses\n", threshold, strings.Join(names, " "))
	p := filepath.Join(t.TempDir(), "witnesses.policy")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// newLogKey makes the log's key pair in DATA/keys before the first
// start, so the witnesses can be told the key.
func newLogKey(t *testing.T, data string) string {
	t.Helper()
	dir := filepath.Join(data, "keys")
	if _, errOut, code := cli(t, "keygen", "--origin", witnessedOrigin, "--out", dir); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errOut)
	}
	vk, err := os.ReadFile(filepath.Join(dir, "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(vk))
}

// startUnready starts proofline serve and waits only for it to answer
// /healthz: with its witness quorum out of reach it is never ready.
func startUnready(t *testing.T, data string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, data: data, args: extra}
	addr := freeAddr(t)
	s.url = "http://" + addr
	args := append([]string{"serve", "--data", data, "--listen", addr, "--origin", witnessedOrigin, "--log-level", "debug"}, extra...)
	s.cmd = exec.Command(binary, args...)
	s.logPath = filepath.Join(t.TempDir(), "server.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); logf.Close(); close(s.done) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.done:
			t.Fatalf("proofline serve exited during start-up:\n%s", s.logs())
		default:
		}
		if resp, err := http.Get(s.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("proofline serve not up after 60s:\n%s", s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type readiness struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks"`
}

func (s *server) readiness() (int, readiness) {
	s.t.Helper()
	code, body := s.get("", "/readyz")
	var r readiness
	if err := json.Unmarshal(body, &r); err != nil {
		s.t.Fatalf("/readyz: %v: %s", err, body)
	}
	return code, r
}

// waitFor polls cond until it holds or a minute passes.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 60s; last: %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) mustPost(tok string, idList []string) {
	s.t.Helper()
	code, _, pr, err := s.post(tok, jsonArray(s.t, records(idList)...), nil)
	if err != nil || code != http.StatusAccepted || pr.Accepted != len(idList) {
		s.t.Fatalf("post: %d %+v %v", code, pr, err)
	}
}

// verifyBundle runs proofline verify --bundle with a witness policy.
func verifyBundle(t *testing.T, bundle []byte, keyPath, policy string) (string, int) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(p, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cli(t, "verify", "--bundle", p, "--key", keyPath, "--witness-policy", policy)
	return out + errOut, code
}

// TestWitnessQuorum runs a log with three real witnesses, a quorum of two:
// litewitness as its own process and two transparency-dev witnesses.
// Checkpoints are published cosigned; one witness down still publishes;
// with two down nothing new is published and /readyz and the metrics say
// witness; when they return, publishing resumes and nothing is lost.
func TestWitnessQuorum(t *testing.T) {
	data := t.TempDir()
	logVKey := newLogKey(t, data)
	keyPath := filepath.Join(data, "keys", "log.pub")
	lite := newLiteWitness(t, "lite.witness.test", logVKey)
	a := newGoWitness(t, "a.witness.test", logVKey)
	b := newGoWitness(t, "b.witness.test", logVKey)
	policy := writePolicy(t, "2", lite, a, b)
	strict := writePolicy(t, "all", lite, a, b)
	metricsAddr := freeAddr(t)
	s := startServer(t, data, "--roles", "ingest,signer", "--witness-policy", policy, "--witness-timeout", "3s", "--metrics-listen", metricsAddr)
	ingestTok := s.token("gw", "ingest", "1h")
	queryTok := s.token("auditor", "query", "1h")

	// Quorum met: the bundle's checkpoint carries a quorum's cosignatures.
	batch1 := ids("wq1", 10)
	s.mustPost(ingestTok, batch1)
	out, code := verifyBundle(t, s.waitProof(queryTok, batch1[9]), keyPath, policy)
	if code != 0 || !strings.Contains(out, "cosigned by witnesses") {
		t.Fatalf("verify with the policy: exit %d: %s", code, out)
	}

	// One witness down: two of three still cosign, checkpoints publish.
	lite.stop()
	batch2 := ids("wq2", 10)
	s.mustPost(ingestTok, batch2)
	bundle2 := s.waitProof(queryTok, batch2[9])
	out, code = verifyBundle(t, bundle2, keyPath, policy)
	if code != 0 || !strings.Contains(out, "cosigned by witnesses a.witness.test, b.witness.test (quorum") {
		t.Fatalf("verify with litewitness down: exit %d: %s", code, out)
	}
	// The same checkpoint lacks the quorum of a policy needing all three.
	out, code = verifyBundle(t, bundle2, keyPath, strict)
	if code != 1 || !strings.Contains(out, "witness") || !strings.Contains(out, "a.witness.test, b.witness.test") {
		t.Fatalf("verify against a policy of all three: exit %d, want 1 naming witness and the cosigners: %s", code, out)
	}

	// Quorum lost: nothing new is published, readiness and metrics say why.
	a.stop()
	var sizeBefore uint64
	batch3 := ids("wq3", 10)
	s.mustPost(ingestTok, batch3)
	waitFor(t, "/readyz reports the witness quorum", func() (bool, string) {
		code, r := s.readiness()
		return code == http.StatusServiceUnavailable && strings.Contains(r.Checks["witness"], "quorum") && strings.Contains(r.Checks["witness"], "leaves wait"), fmt.Sprint(code, r)
	})
	waitFor(t, "metrics report the lost quorum and the backlog", func() (bool, string) {
		m := scrape(t, metricsAddr)
		return m["proofline_witness_quorum"] == 0 && m["proofline_log_unpublished_leaves"] >= 1 && m["proofline_witness_up{witness=a.witness.test}"] == 0, fmt.Sprint(m["proofline_witness_quorum"], m["proofline_log_unpublished_leaves"])
	})
	sizeBefore = checkpointSize(t, s, queryTok, keyPath)
	if sizeBefore != 20 {
		t.Fatalf("published checkpoint size %d with the quorum lost, want the 20 leaves cosigned before", sizeBefore)
	}
	if code, body := s.get(queryTok, "/v1/proof/"+batch3[0]); code == http.StatusOK {
		t.Fatalf("a record is provable with the quorum lost: %s", body)
	}

	// Quorum regained: publishing resumes and every record is there.
	lite.start()
	a.start()
	bundle3 := s.waitProof(queryTok, batch3[9])
	out, code = verifyBundle(t, bundle3, keyPath, policy)
	if code != 0 {
		t.Fatalf("verify after the quorum returned: exit %d: %s", code, out)
	}
	waitFor(t, "/readyz ready again", func() (bool, string) {
		code, r := s.readiness()
		return code == http.StatusOK && r.Checks["witness"] == "ok", fmt.Sprint(code, r)
	})
	got, _ := logRecordIDs(t, s, queryTok, keyPath)
	for _, id := range append(append(batch1, batch2...), batch3...) {
		if got[id] != 1 {
			t.Fatalf("record %s is in the log %d times, want once", id, got[id])
		}
	}

	// An evidence archive carries the cosigned checkpoint and the policy.
	archive := filepath.Join(t.TempDir(), "witnessed.tar.zst")
	if out, errOut, code := cli(t, "archive", "--data", data, "--witness-policy", policy, "--out", archive); code != 0 {
		t.Fatalf("archive: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code := cli(t, "verify", "--archive", archive, "--key", keyPath, "--witness-policy", policy)
	if code != 0 || !strings.Contains(out, "cosigned by witnesses") {
		t.Fatalf("verify --archive with the policy: exit %d: %s%s", code, out, errOut)
	}
}

// TestWitnessRefusesFork serves a forked log to the witnesses: a second
// log with the same origin and key but other entries. Both witnesses
// (litewitness and a transparency-dev witness) refuse it; the fork is
// reported (logs, /readyz, refusal metrics) and nothing is published.
func TestWitnessRefusesFork(t *testing.T) {
	dataA := t.TempDir()
	logVKey := newLogKey(t, dataA)
	lite := newLiteWitness(t, "lite.witness.test", logVKey)
	g := newGoWitness(t, "go.witness.test", logVKey)
	policy := writePolicy(t, "all", lite, g)

	a := startServer(t, dataA, "--roles", "ingest,signer", "--witness-policy", policy, "--witness-timeout", "3s")
	tokA := a.token("gw", "ingest", "1h")
	idsA := ids("honest", 5)
	a.mustPost(tokA, idsA)
	a.waitProof(a.token("auditor", "query", "1h"), idsA[4])
	a.stop()

	// The fork: the same key in a fresh log, with other records.
	dataB := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dataB, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"log.key", "log.pub"} {
		raw, err := os.ReadFile(filepath.Join(dataA, "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dataB, "keys", f), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	metricsAddr := freeAddr(t)
	b := startUnready(t, dataB, "--roles", "ingest,signer", "--witness-policy", policy, "--witness-timeout", "3s", "--metrics-listen", metricsAddr)
	tokB := b.token("gw", "ingest", "1h")
	queryB := b.token("auditor", "query", "1h")
	b.mustPost(tokB, ids("forked", 12))

	for _, w := range []string{"lite.witness.test", "go.witness.test"} {
		waitFor(t, w+" refuses the forked log as inconsistent", func() (bool, string) {
			m := scrape(t, metricsAddr)
			k := "proofline_witness_refusals_total{reason=inconsistent}{witness=" + w + "}"
			return m[k] >= 1, fmt.Sprint(k, "=", m[k])
		})
	}
	code, r := b.readiness()
	if code != http.StatusServiceUnavailable || !strings.Contains(r.Checks["witness"], "forked") {
		t.Fatalf("/readyz of the forked log: %d %v, want 503 with witness naming the fork", code, r)
	}
	if !logHas(b.logs(), "fork or rollback") {
		t.Fatalf("the server log does not report the fork:\n%s", b.logs())
	}
	if code, body := b.get(queryB, "/checkpoint"); code == http.StatusOK {
		t.Fatalf("the forked log published a checkpoint:\n%s", body)
	}
}

func logHas(logs, s string) bool {
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
}

// TestWitnessFailOpen: with --witness-fail-open a log whose witness is
// down keeps publishing, and auditors holding the witness policy reject
// those checkpoints: verify (bundle and --log) exits 1 naming witness.
func TestWitnessFailOpen(t *testing.T) {
	data := t.TempDir()
	logVKey := newLogKey(t, data)
	keyPath := filepath.Join(data, "keys", "log.pub")
	w := newGoWitness(t, "only.witness.test", logVKey)
	policy := writePolicy(t, "all", w)
	s := startServer(t, data, "--roles", "ingest,signer", "--witness-policy", policy, "--witness-fail-open", "--witness-timeout", "2s", "--public-log")
	ingestTok := s.token("gw", "ingest", "1h")
	queryTok := s.token("auditor", "query", "1h")
	state := filepath.Join(t.TempDir(), "state.json")
	audit := func() (string, int) {
		out, errOut, code := cli(t, "verify", "--log", s.url, "--key", keyPath, "--state", state, "--witness-policy", policy)
		return out + errOut, code
	}

	first := ids("open1", 3)
	s.mustPost(ingestTok, first)
	s.waitProof(queryTok, first[2])
	if out, code := audit(); code != 0 || !strings.Contains(out, "cosigned by witnesses only.witness.test") {
		t.Fatalf("verify --log with the witness up: exit %d: %s", code, out)
	}

	w.stop()
	second := ids("open2", 3)
	s.mustPost(ingestTok, second)
	bundle := s.waitProof(queryTok, second[2])
	if code, r := s.readiness(); code != http.StatusOK {
		t.Fatalf("/readyz with fail-open: %d %v, want ready", code, r)
	}
	out, code := verifyBundle(t, bundle, keyPath, policy)
	if code != 1 || !strings.Contains(out, "witness") || !strings.Contains(out, "no witness") {
		t.Fatalf("verify of a bundle published without the quorum: exit %d: %s", code, out)
	}
	if out, code := audit(); code != 1 || !strings.Contains(out, "witness mismatch") {
		t.Fatalf("verify --log of a checkpoint without the quorum: exit %d: %s", code, out)
	}
	// A monitor holding the policy does not accept the checkpoint, and
	// says so, without taking it for a fork.
	monAddr := freeAddr(t)
	mon := exec.Command(binary, "monitor", "--log", s.url, "--key", keyPath, "--state", filepath.Join(t.TempDir(), "mon.json"),
		"--witness-policy", policy, "--interval", "100ms", "--metrics-listen", monAddr)
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mon.Process.Kill(); _ = mon.Wait() })
	waitFor(t, "monitor rejects the checkpoint for its witness quorum", func() (bool, string) {
		m := scrapeOrNil(monAddr)
		return m != nil && m["proofline_monitor_checks_total{result=witness}"] >= 2 && m["proofline_monitor_tree_size"] == 0 &&
			m["proofline_monitor_fork_detected"] == 0, fmt.Sprint(m)
	})
	// Without the policy the same bundle verifies: only the quorum is missing.
	p := filepath.Join(t.TempDir(), "b.json")
	_ = os.WriteFile(p, bundle, 0o644)
	if out, errOut, code := cli(t, "verify", "--bundle", p, "--key", keyPath); code != 0 {
		t.Fatalf("verify without a policy: exit %d: %s%s", code, out, errOut)
	}
}

// TestServeRejectsBadWitnessPolicy: a policy serve cannot use stops it at
// start with a usage error naming the flag, before any engine starts.
func TestServeRejectsBadWitnessPolicy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, logVKey, err := note.GenerateKey(rand.Reader, witnessedOrigin)
	if err != nil {
		t.Fatal(err)
	}
	w := newGoWitness(t, "w.witness.test", logVKey)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"--witness-policy", filepath.Join(dir, "nope")}, "--witness-policy"},
		{"no quorum", []string{"--witness-policy", write("noquorum", "witness w "+w.vkey()+" "+w.url()+"\n")}, "quorum"},
		{"witness without URL", []string{"--witness-policy", write("nourl", "witness w "+w.vkey()+"\nquorum w\n")}, "witness"},
		{"not a cosignature key", []string{"--witness-policy", write("badkey", "witness w nope+0000+AAAA "+w.url()+"\nquorum w\n")}, "witness"},
		{"fail-open without a policy", []string{"--witness-fail-open"}, "--witness-policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			_, errOut, code := cli(t, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0"}, tc.args...)...)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, want 2 with %q: %s", code, tc.want, errOut)
			}
			if _, err := os.Stat(data); err == nil {
				t.Fatalf("serve made the data dir %s before rejecting the policy", data)
			}
		})
	}
}
