package syslogsink_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/syslogsink"
	"github.com/proofline/proofline/internal/testpki"
	"github.com/proofline/proofline/internal/testutil"
	"github.com/proofline/proofline/ledger"
)

// rsyslog is a real rsyslogd (Debian's rsyslog + rsyslog-gnutls) listening
// for RFC 5425 syslog over TLS on 127.0.0.1 and writing every message it
// receives as one JSON line to a file.
type rsyslog struct {
	addr, out string
	cmd       *exec.Cmd
}

func startRsyslog(t *testing.T, pki testpki.PKI) *rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("rsyslogd is missing: scripts/setup.sh installs Debian's rsyslog and rsyslog-gnutls")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &rsyslog{addr: fmt.Sprintf("127.0.0.1:%d", port), out: filepath.Join(dir, "received.jsonl")}
	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o700)
	conf := fmt.Sprintf(`global(maxMessageSize="64k" workDirectory=%q
  defaultNetstreamDriverCAFile=%q defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="j" type="list" option.jsonf="on") {
  property(outname="msg" name="msg" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
}
ruleset(name="r") { action(type="omfile" file=%q template="j") }
input(type="imtcp" address="127.0.0.1" port="%d" ruleset="r")
`, work, pki.CAFile, pki.ServerCert, pki.ServerKey, r.out, port)
	cf := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(cf, []byte(conf), 0o600)
	r.cmd = exec.Command(bin, "-n", "-f", cf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	logf, _ := os.Create(filepath.Join(dir, "rsyslogd.log"))
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() })
	testutil.Eventually(t, 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", r.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "rsyslogd listening")
	return r
}

type received struct {
	Msg, SD, App, MsgID, Pri string
}

func (r *rsyslog) lines(t *testing.T) []received {
	t.Helper()
	f, err := os.Open(r.out)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []received
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m struct {
			Msg   string `json:"msg"`
			SD    string `json:"sd"`
			App   string `json:"app"`
			MsgID string `json:"msgid"`
			Pri   string `json:"pri"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("rsyslog output: %v: %s", err, sc.Text())
		}
		out = append(out, received{m.Msg, m.SD, m.App, m.MsgID, m.Pri})
	}
	return out
}

var cefExt = regexp.MustCompile(`(?:^| )([A-Za-z0-9]+)=`)

// parseCEF splits a CEF line into its 7 header fields and its extension
// map, undoing CEF's escapes.
func parseCEF(t *testing.T, s string) ([]string, map[string]string) {
	t.Helper()
	s = strings.TrimSpace(s)
	var hdr []string
	var cur strings.Builder
	i := 0
	for ; i < len(s) && len(hdr) < 7; i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
		case s[i] == '|':
			hdr = append(hdr, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	if len(hdr) != 7 {
		t.Fatalf("not CEF: %q", s)
	}
	rest := s[i:]
	ext := map[string]string{}
	// Keys start after an unescaped space; values may hold escaped '='.
	locs := cefExt.FindAllStringSubmatchIndex(rest, -1)
	var keys []struct {
		k      string
		vs, ve int
	}
	for j, l := range locs {
		if l[0] > 0 && rest[l[0]-1] == '\\' {
			continue
		}
		_ = j
		keys = append(keys, struct {
			k      string
			vs, ve int
		}{rest[l[2]:l[3]], l[1], 0})
	}
	for j := range keys {
		end := len(rest)
		if j+1 < len(keys) {
			end = keys[j+1].vs - len(keys[j+1].k) - 2
			if end < keys[j].vs {
				end = keys[j].vs
			}
		}
		v := rest[keys[j].vs:end]
		v = strings.NewReplacer(`\\`, `\`, `\=`, `=`, `\n`, "\n", `\r`, "\r").Replace(v)
		ext[keys[j].k] = v
	}
	return hdr, ext
}

func TestCEFOverTLSToRealRsyslog(t *testing.T) {
	pki := testpki.New(t)
	rs := startRsyslog(t, pki)

	skey, vkey, _ := note.GenerateKey(rand.Reader, "syslog.test/log")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	l, err := ledger.Open(context.Background(), ledger.Config{Dir: t.TempDir(), Signer: s, Verifier: v,
		BatchMaxAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	const n = 300
	// Values that need escaping in CEF headers, CEF extensions and SD.
	reason := "over the limit = 1000\nsee \"policy] \\ docs\""
	es := make([]ledger.Entry, n)
	for i := range es {
		id := fmt.Sprintf("call-%04d", i)
		rec := map[string]any{"record_id": id, "ts_start": "2026-12-01T10:00:00.000000000Z", "ts_end": "2026-12-01T10:00:00.250000000Z",
			"actor": map[string]any{"id": "agent-7", "type": "agent"}, "tool": map[string]any{"name": "search|tickets", "server": "jira-mcp"},
			"policy": map[string]any{"decision": "allow"}, "outcome": map[string]any{"status": "ok"}}
		if i%10 == 3 {
			rec["policy"] = map[string]any{"decision": "deny", "rule": "limit", "reason": reason}
			rec["outcome"] = map[string]any{"status": "policy_blocked"}
			rec["elevation"] = map[string]any{"scopes": []string{"payments:write", "tickets:admin"}, "reason": "INC-7"}
		}
		b, _ := json.Marshal(rec)
		es[i] = ledger.Entry{ID: id, Data: b}
	}
	if _, err := l.Append(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { cp, _, err := l.Checkpoint(context.Background()); return err == nil && cp.Size == n }, "checkpoint")

	ca, _ := os.ReadFile(pki.CAFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	sink, err := syslogsink.New(syslogsink.Config{Addr: rs.addr, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := exporters.OpenStateDir(t.TempDir())
	defer st.Close()
	r, err := exporters.New(exporters.Config{Source: exporters.NewFileSource(l.TilesDir(), v), State: st,
		Sinks: []exporters.SinkSpec{{Name: "syslog", Sink: sink, BatchSize: 64}}, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	testutil.Eventually(t, 30*time.Second, func() bool {
		calls := 0
		for _, m := range rs.lines(t) {
			if m.MsgID == "call" {
				calls++
			}
		}
		return calls >= n
	}, "rsyslog received every call")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	seen := map[string]bool{}
	checkpoints := 0
	sdRe := regexp.MustCompile(`^\[proofline@32473 origin="syslog.test/log" leaf="(\d+)" size="(\d+)" record_id="(call-\d+)"\]$`)
	for _, m := range rs.lines(t) {
		if m.App != "proofline" {
			t.Fatalf("app-name %q", m.App)
		}
		hdr, ext := parseCEF(t, m.Msg)
		if m.MsgID == "checkpoint" {
			checkpoints++
			if hdr[4] != "checkpoint" || !strings.HasPrefix(ext["cs2"], "syslog.test/log\n") {
				t.Fatalf("checkpoint event: %v %v", hdr, ext)
			}
			if _, err := note.Open([]byte(ext["cs2"]), note.VerifierList(v)); err != nil {
				t.Fatalf("the checkpoint in the SIEM does not verify: %v", err)
			}
			continue
		}
		sm := sdRe.FindStringSubmatch(m.SD)
		if sm == nil {
			t.Fatalf("structured data %q", m.SD)
		}
		if hdr[0] != "CEF:0" || hdr[1] != "proofline" || hdr[3] != "1.2.3" || hdr[5] != "tools/call search|tickets" {
			t.Fatalf("CEF header %q", hdr)
		}
		if ext["externalId"] != sm[3] || ext["cn1"] != sm[1] || ext["cs1"] != "search|tickets" || ext["suser"] != "agent-7" {
			t.Fatalf("CEF extension %v for %s", ext, m.SD)
		}
		var i int
		fmt.Sscan(sm[1], &i)
		if i%10 == 3 {
			if ext["act"] != "deny" || ext["reason"] != reason || hdr[6] != "7" || m.Pri != "108" {
				t.Fatalf("denied call: act %q reason %q severity %q pri %q", ext["act"], ext["reason"], hdr[6], m.Pri)
			}
			// An elevation nobody approved: the scopes, and no approver.
			if ext["flexString2Label"] != "elevationScopes" || ext["flexString2"] != "payments:write,tickets:admin" || ext["flexString1"] != "" {
				t.Fatalf("denied elevated call's elevation: %v", ext)
			}
		} else if ext["act"] != "allow" || m.Pri != "110" || ext["flexString2"] != "" {
			t.Fatalf("allowed call: %v pri %s", ext, m.Pri)
		}
		seen[sm[3]] = true
	}
	if len(seen) != n || checkpoints == 0 {
		t.Fatalf("%d distinct calls, %d checkpoints", len(seen), checkpoints)
	}
}
