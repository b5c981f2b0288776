package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newTestKeys(t *testing.T) *Keys {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return NewKeys(priv)
}

func TestIssueVerify(t *testing.T) {
	k := newTestKeys(t)
	clock := time.Unix(1_800_000_000, 0)
	k.now = func() time.Time { return clock }
	tok, err := k.Issue("gw-1", ScopeIngest, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := k.Issue("root", ScopeAdmin, time.Hour)
	other := newTestKeys(t)
	foreign, _ := other.Issue("gw-1", ScopeIngest, time.Hour)
	tampered := tok[:len(tok)-4] + "AAAA"
	if tampered == tok {
		tampered = tok[:len(tok)-4] + "BBBB"
	}

	cases := []struct {
		name  string
		token string
		want  Scope
		at    time.Duration
		err   error
	}{
		{"valid", tok, ScopeIngest, 0, nil},
		{"admin does anything", admin, ScopeQuery, 0, nil},
		{"wrong scope", tok, ScopeQuery, 0, ErrScope},
		{"expired", tok, ScopeIngest, time.Hour + time.Second, ErrExpired},
		{"other key", foreign, ScopeIngest, 0, ErrInvalid},
		{"tampered", tampered, ScopeIngest, 0, ErrInvalid},
		{"garbage", "a.b.c", ScopeIngest, 0, ErrInvalid},
		{"missing", "", ScopeIngest, 0, ErrMissing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k.now = func() time.Time { return clock.Add(c.at) }
			claims, err := k.Verify(c.token, c.want)
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if c.err == nil && claims.Principal == "" {
				t.Fatal("no principal")
			}
		})
	}
	for _, bad := range []struct {
		p   string
		s   Scope
		ttl time.Duration
	}{{"has space", ScopeIngest, time.Hour}, {"gw", "root", time.Hour}, {"gw", ScopeIngest, 0}, {"gw", ScopeIngest, MaxTTL + time.Second}} {
		if _, err := k.Issue(bad.p, bad.s, bad.ttl); err == nil {
			t.Errorf("Issue(%q, %q, %s) accepted", bad.p, bad.s, bad.ttl)
		}
	}
}

func TestLoadOrCreateKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token.key")
	k1, err := LoadOrCreateKeys(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKeys(p)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := k1.Issue("gw-1", ScopeIngest, time.Minute)
	if _, err := k2.Verify(tok, ScopeIngest); err != nil {
		t.Fatalf("reloaded key does not verify its own tokens: %v", err)
	}
}

func TestRequire(t *testing.T) {
	k := newTestKeys(t)
	h := k.Require(ScopeIngest, func(w http.ResponseWriter, status int, err error) {
		http.Error(w, err.Error(), status)
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := FromContext(r.Context())
		w.Write([]byte(c.Principal))
	}))
	ingest, _ := k.Issue("gw-1", ScopeIngest, time.Minute)
	query, _ := k.Issue("sre", ScopeQuery, time.Minute)
	for _, c := range []struct {
		header string
		status int
		body   string
	}{
		{"Bearer " + ingest, 200, "gw-1"},
		{"bearer " + ingest, 200, "gw-1"},
		{"Bearer " + query, 403, "scope"},
		{"", 401, "missing"},
		{"Basic dXNlcjpwYXNz", 401, "missing"},
	} {
		r := httptest.NewRequest("POST", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.status || !strings.Contains(w.Body.String(), c.body) {
			t.Errorf("%q: %d %q, want %d containing %q", c.header, w.Code, w.Body.String(), c.status, c.body)
		}
		if c.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%q: 401 without WWW-Authenticate", c.header)
		}
	}
}
