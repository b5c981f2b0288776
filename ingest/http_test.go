package ingest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/proofline/proofline/internal/auth"
	"github.com/proofline/proofline/internal/ratelimit"
)

// countingBody records how many bytes of a request body were read.
type countingBody struct {
	r    io.Reader
	read int
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	return n, err
}

func (b *countingBody) Close() error { return nil }

// TestRefusedBeforeTheBodyIsRead: a request without a valid token, or
// from a principal over its rate, is answered without a byte of its body
// being read: neither costs the server any decompression.
func TestRefusedBeforeTheBodyIsRead(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := auth.NewKeys(priv)
	tok, err := keys.Issue("gw-1", auth.ScopeIngest, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	limiter := ratelimit.New(1, 2)
	budget, err := NewBudget(MinDecodeBudget, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(Config{Budget: budget}, nil, nil, limiter, slog.New(slog.DiscardHandler))
	srv := keys.Require(auth.ScopeIngest, func(w http.ResponseWriter, status int, err error) { http.Error(w, err.Error(), status) }, h)
	if ok, _, _ := limiter.Take("gw-1", 2); !ok {
		t.Fatal("could not use up the burst")
	}
	for _, c := range []struct {
		name   string
		token  string
		status int
	}{{"no token", "", http.StatusUnauthorized}, {"over its rate", tok, http.StatusTooManyRequests}} {
		body := &countingBody{r: bytes.NewReader(bytes.Repeat([]byte("x"), 1<<20))}
		r := httptest.NewRequest(http.MethodPost, "/v1/records", body)
		r.Header.Set("Content-Encoding", "zstd")
		if c.token != "" {
			r.Header.Set("Authorization", "Bearer "+c.token)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != c.status || body.read != 0 {
			t.Errorf("%s: %d after reading %d bytes of the body, want %d before reading any", c.name, w.Code, body.read, c.status)
		}
		if c.status == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", c.name)
		}
	}
}

// TestPrefersMinimal reads RFC 7240's Prefer header as clients write it.
func TestPrefersMinimal(t *testing.T) {
	for _, c := range []struct {
		headers []string
		want    bool
	}{
		{nil, false},
		{[]string{"return=minimal"}, true},
		{[]string{`return="minimal"`}, true},
		{[]string{"Return = Minimal"}, true},
		{[]string{"respond-async, return=minimal; foo=bar"}, true},
		{[]string{"wait=10", "return=minimal"}, true},
		{[]string{"return=representation"}, false},
		{[]string{"return=minimalist"}, false},
		{[]string{"handling=strict"}, false},
		{[]string{"minimal"}, false},
		{[]string{"foo; return=minimal"}, false}, // a parameter of foo, not a preference
	} {
		if got := prefersMinimal(c.headers); got != c.want {
			t.Errorf("prefersMinimal(%q) = %v, want %v", c.headers, got, c.want)
		}
	}
}
