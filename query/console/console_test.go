package console

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/internal/testutil"
)

func TestHandlerServesAssetsLockedDown(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/ui/", "text/html", `<script type="module" src="app.js">`},
		{"/ui/app.js", "javascript", "verifyBundle"},
		{"/ui/verify.js", "javascript", "rootFromInclusion"},
		{"/ui/chart.js", "javascript", "lineChart"},
		{"/ui/style.css", "text/css", "svg.chart"},
	} {
		res, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(body.String(), tc.contains) {
			t.Errorf("%s: %d %q, body has %q: %v", tc.path, res.StatusCode, res.Header.Get("Content-Type"), tc.contains, strings.Contains(body.String(), tc.contains))
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", tc.path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", tc.path)
		}
	}
	if res, err := http.Get(srv.URL + "/ui/missing.js"); err != nil || res.StatusCode != 404 {
		t.Fatalf("a missing asset: %v %v", res.StatusCode, err)
	}
}

// testLog is a log made with third-party code only (transparency-dev's
// reference Merkle tree, gowebpki/jcs, Go's signed-note package), so the
// browser verifier is checked against the specs, not against proofline's
// own writer.
type testLog struct {
	records []map[string]any
	tree    *testonly.Tree
	signer  note.Signer
	vkey    string
	origin  string
}

func newTestLog(t *testing.T, n int) *testLog {
	t.Helper()
	origin := "console.test/log"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{tree: testonly.New(rfc6962.DefaultHasher), signer: signer, vkey: vkey, origin: origin}
	for i := 0; i < n; i++ {
		r := map[string]any{
			"schema": "proofline.callrecord/v1", "record_id": fmt.Sprintf("rec-%03d", i),
			"tool": map[string]any{"name": "search", "server": "jira-mcp"},
			// Values whose canonical forms differ from naive JSON: key
			// order by UTF-16 units, exponents, escapes, non-ASCII.
			"cost":       map[string]any{"amount": 0.1 + float64(i), "currency": "EUR"},
			"attributes": map[string]any{"é": "ü\u2028\"", "a": 1e21, "B": []any{true, nil, 1.5e-7}, "\U0001F600": "x"},
		}
		raw, _ := json.Marshal(r)
		canon, err := jcs.Transform(raw)
		if err != nil {
			t.Fatal(err)
		}
		l.records = append(l.records, r)
		l.tree.AppendData(canon)
	}
	return l
}

// checkpoint signs the tree's checkpoint with the log key and, as a
// witness would, with a second key.
func (l *testLog) checkpoint(t *testing.T) string {
	t.Helper()
	text := log.Checkpoint{Origin: l.origin, Size: l.tree.Size(), Hash: l.tree.Hash()}.Marshal()
	wskey, _, err := note.GenerateKey(rand.Reader, "witness.test/w1")
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := note.NewSigner(wskey)
	signed, err := note.Sign(&note.Note{Text: string(text)}, l.signer, ws)
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func (l *testLog) bundle(t *testing.T, i uint64) map[string]any {
	t.Helper()
	p, err := l.tree.InclusionProof(i, l.tree.Size())
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(l.records[i])
	return map[string]any{"record": json.RawMessage(rec), "leaf_index": i, "inclusion_proof": p, "checkpoint": l.checkpoint(t)}
}

// edit turns a bundle into JSON and back with f applied in between.
func edit(t *testing.T, b map[string]any, f func(m map[string]any)) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(b)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	return m
}

func TestVerifyJSAgainstSpecs(t *testing.T) {
	_, node := testutil.NPMTools(t) // Node 22: its WebCrypto has Ed25519, as browsers do
	l := newTestLog(t, 13)
	_, otherKey, _ := note.GenerateKey(rand.Reader, l.origin)
	type tc struct {
		name   string
		bundle map[string]any
		vkey   string
		failed string // the step that must fail; "" = proven
	}
	var cases []tc
	for _, i := range []uint64{0, 5, 11, 12} {
		cases = append(cases, tc{name: fmt.Sprintf("leaf %d of 13", i), bundle: l.bundle(t, i), vkey: l.vkey})
	}
	good := l.bundle(t, 6)
	cases = append(cases,
		tc{"a record value changed", edit(t, good, func(m map[string]any) {
			m["record"].(map[string]any)["cost"].(map[string]any)["amount"] = 99.0
		}), l.vkey, "inclusion proof (RFC 6962)"},
		tc{"a field added to the record", edit(t, good, func(m map[string]any) { m["record"].(map[string]any)["x"] = 1.0 }), l.vkey, "inclusion proof (RFC 6962)"},
		tc{"another leaf index", edit(t, good, func(m map[string]any) { m["leaf_index"] = 7.0 }), l.vkey, "inclusion proof (RFC 6962)"},
		tc{"a leaf index outside the tree", edit(t, good, func(m map[string]any) { m["leaf_index"] = 13.0 }), l.vkey, "inclusion proof (RFC 6962)"},
		tc{"a proof hash changed", edit(t, good, func(m map[string]any) {
			p := m["inclusion_proof"].([]any)
			p[1] = p[0]
		}), l.vkey, "inclusion proof (RFC 6962)"},
		tc{"the proof cut short", edit(t, good, func(m map[string]any) {
			p := m["inclusion_proof"].([]any)
			m["inclusion_proof"] = p[:len(p)-1]
		}), l.vkey, "inclusion proof (RFC 6962)"},
		tc{"the checkpoint's size changed after signing", edit(t, good, func(m map[string]any) {
			m["checkpoint"] = strings.Replace(m["checkpoint"].(string), "\n13\n", "\n14\n", 1)
		}), l.vkey, "checkpoint signature (Ed25519)"},
		tc{"the signature's last byte flipped", edit(t, good, func(m map[string]any) {
			cp := m["checkpoint"].(string)
			lines := strings.Split(strings.TrimSuffix(cp, "\n"), "\n")
			for i, ln := range lines {
				if strings.HasPrefix(ln, "— "+l.origin+" ") {
					sig := ln[strings.LastIndex(ln, " ")+1:]
					b := []byte(sig)
					if b[len(b)-3] == 'A' {
						b[len(b)-3] = 'B'
					} else {
						b[len(b)-3] = 'A'
					}
					lines[i] = ln[:strings.LastIndex(ln, " ")+1] + string(b)
				}
			}
			m["checkpoint"] = strings.Join(lines, "\n") + "\n"
		}), l.vkey, "checkpoint signature (Ed25519)"},
		tc{"another key of the same name", good, otherKey, "checkpoint signature (Ed25519)"},
		tc{"a key whose hash is wrong", good, l.vkey[:len(l.origin)+1] + "00000000" + l.vkey[len(l.origin)+9:], "verifier key"},
		tc{"no checkpoint", edit(t, good, func(m map[string]any) { delete(m, "checkpoint") }), l.vkey, "checkpoint signature (Ed25519)"},
		tc{"the record is not an object", edit(t, good, func(m map[string]any) { m["record"] = "rec-006" }), l.vkey, "leaf hash (RFC 8785, RFC 6962)"},
	)
	in, _ := json.Marshal(func() []map[string]any {
		var out []map[string]any
		for _, c := range cases {
			out = append(out, map[string]any{"name": c.name, "bundle": c.bundle, "vkey": c.vkey})
		}
		return out
	}())
	cmd := exec.Command(node, filepath.Join("testdata", "verify_runner.mjs"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("node verify_runner: %v\n%s", err, stderr.String())
	}
	var got []struct {
		Name, Failed, Detail string
		OK                   bool
	}
	if err := json.Unmarshal(raw, &got); err != nil || len(got) != len(cases) {
		t.Fatalf("runner output %s: %v", raw, err)
	}
	for i, c := range cases {
		g := got[i]
		if g.OK != (c.failed == "") || g.Failed != c.failed {
			t.Errorf("%s: ok=%v, failed %q (%s); want failed %q", c.name, g.OK, g.Failed, g.Detail, c.failed)
		}
	}
}
