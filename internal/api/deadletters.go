package api

import (
	"net/http"
	"strconv"

	"github.com/proofline/proofline/internal/httpx"
)

// deadLetters serves GET /v1/deadletters?reason=&after=&limit=: what the
// DEADLETTER stream holds (record id, reason, time, the consumer that
// gave up on it), oldest first, never the records themselves.
func (d Deps) deadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			httpx.WriteError(w, http.StatusBadRequest, "limit must be 1..1000")
			return
		}
		limit = n
	}
	var after uint64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			httpx.WriteError(w, http.StatusBadRequest, "after must be a stream sequence (the previous page's next)")
			return
		}
		after = n
	}
	page, err := d.Bus.DeadLetters(r.Context(), after, limit, q.Get("reason"))
	if err != nil {
		d.Logger.ErrorContext(r.Context(), "dead letters", "err", err)
		w.Header().Set("Retry-After", "1")
		httpx.WriteError(w, http.StatusServiceUnavailable, "could not read the dead-letter stream")
		return
	}
	httpx.WriteJSON(w, http.StatusOK, page)
}
