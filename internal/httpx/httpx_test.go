package httpx_test

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/proofline/proofline/internal/httpx"
)

// TestJSONErrors: every error answer, whoever wrote it (the router, a
// file server, http.Error, a handler that only sets a status), has the
// one JSON error shape with its status kept; JSON errors and successes
// pass through as they were.
func TestJSONErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("fine"))
	})
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "disk on fire", http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /bare", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})
	mux.HandleFunc("GET /json", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteError(w, http.StatusTooManyRequests, "slow down")
	})
	// A value JSON cannot hold: a 500 in the error shape, never a 200
	// with an empty body.
	mux.HandleFunc("GET /nan", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]float64{"mean": math.NaN()})
	})
	h := httpx.JSONErrors(mux)
	tests := []struct {
		method, path string
		status       int
		code, msg    string
		allow        string
	}{
		{"GET", "/nope", 404, "not_found", "404 page not found", ""},
		{"POST", "/ok", 405, "method_not_allowed", "Method Not Allowed", "GET, HEAD"},
		{"GET", "/boom", 500, "internal", "disk on fire", ""},
		{"GET", "/bare", 502, "internal", "Bad Gateway", ""},
		{"GET", "/json", 429, "rate_limited", "slow down", ""},
		{"GET", "/nan", 500, "internal", "the answer could not be encoded as JSON", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			var body httpx.ErrorBody
			if rec.Code != tc.status || rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
				t.Fatalf("%d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			if body.Error.Code != tc.code || body.Error.Message != tc.msg {
				t.Fatalf("error %+v, want code %q message %q", body.Error, tc.code, tc.msg)
			}
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Fatalf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/ok", nil))
	if rec.Code != 200 || rec.Body.String() != "fine" {
		t.Fatalf("success changed: %d %q", rec.Code, rec.Body)
	}
}
