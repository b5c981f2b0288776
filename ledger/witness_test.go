package ledger

import (
	"net/http"
	"testing"
)

// TestClassifyWitnessAnswers: the C2SP tlog-witness answers that mean a
// fork or a rollback are told apart from an outage, a misconfiguration
// and the protocol's own resynchronisation (409 with a smaller size).
func TestClassifyWitnessAnswers(t *testing.T) {
	req := []byte("old 3\n\nexample.com/log\n10\nq5jtHjPdO8J3qA2fvYQeOsTWKGoA6v/Jv0wuR8flf1U=\n\n— example.com/log AAAA\n")
	for _, tc := range []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string
	}{
		{"cosigned", http.StatusOK, "", "— w sig\n", ""},
		{"resync to a smaller size", http.StatusConflict, "text/x.tlog.size", "7\n", ""},
		{"witness saw a larger tree", http.StatusConflict, "text/x.tlog.size", "12\n", RefusedRollback},
		{"same size, other root", http.StatusConflict, "", "", RefusedInconsistent},
		{"bad consistency proof", http.StatusUnprocessableEntity, "", "", RefusedInconsistent},
		{"unknown log", http.StatusNotFound, "", "", RefusedUnknownLog},
		{"untrusted key", http.StatusForbidden, "", "", RefusedKey},
		{"overloaded", http.StatusServiceUnavailable, "", "busy", RefusedOther},
		{"unreadable size", http.StatusConflict, "text/x.tlog.size", "twelve", RefusedOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.status, Status: http.StatusText(tc.status), Header: http.Header{}}
			if tc.contentType != "" {
				resp.Header.Set("Content-Type", tc.contentType)
			}
			got, msg := classify(resp, []byte(tc.body), req)
			if got != tc.want {
				t.Fatalf("classify = %q (%s), want %q", got, msg, tc.want)
			}
		})
	}
}

func TestWitnessConfigValidate(t *testing.T) {
	const vkey = "w.example+c6e8d1b2+BCKmbzfn8G8Pe9dJMqvy4A5J0T0aRtj2Yd1zHbE1O6xh"
	for _, tc := range []struct {
		name, policy string
		ok           bool
	}{
		{"one witness", "witness w " + vkey + " http://127.0.0.1:1\nquorum w\n", true},
		{"no URL", "witness w " + vkey + "\nquorum w\n", false},
		{"no quorum", "witness w " + vkey + " http://127.0.0.1:1\n", false},
		{"quorum none has no witnesses", "quorum none\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&WitnessConfig{Policy: []byte(tc.policy)}).Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
