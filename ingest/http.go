// Package ingest is proofline's front door: the HTTP API gateways post call
// records to, and the JetStream publisher every producer shares.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/auth"
	"github.com/proofline/proofline/internal/httpx"
	"github.com/proofline/proofline/internal/metrics"
	"github.com/proofline/proofline/internal/ratelimit"
	"github.com/proofline/proofline/schemas"
)

// Config bounds what one request may carry.
type Config struct {
	// MaxBodyBytes bounds the body, compressed and decompressed.
	MaxBodyBytes int64
	// MaxRecords bounds the records in one request.
	MaxRecords int
	// PublishTimeout bounds the wait for JetStream to confirm storage.
	PublishTimeout time.Duration
	// Metrics, when set, counts the records by result.
	Metrics *metrics.Ingest
	// Budget, when set, bounds the bytes all requests together hold
	// while decompressing and decoding (see Budget); shared by every
	// handler of the process.
	Budget *Budget
}

// DefaultConfig is used for zero fields.
var DefaultConfig = Config{MaxBodyBytes: 16 << 20, MaxRecords: 10_000, PublishTimeout: 10 * time.Second}

// Status of one record in a response.
const (
	StatusAccepted  = "accepted"
	StatusDuplicate = "duplicate"
	StatusRejected  = "rejected"
	// StatusConflict: the record id is held by a different record (other
	// content, or another principal's). Nothing was stored; the log keeps
	// the holder. The sender should give its record a new id.
	StatusConflict = "conflict"
)

// Result is the outcome for one record of a request, in request order.
type Result struct {
	Index     int                  `json:"index"`
	RecordID  string               `json:"record_id,omitempty"`
	Status    string               `json:"status"`
	Errors    []schemas.FieldError `json:"errors,omitempty"`
	StreamSeq uint64               `json:"stream_seq,omitempty"`
	// LeafIndex is, for a conflict, the leaf holding the id when known.
	LeafIndex *uint64 `json:"leaf_index,omitempty"`
}

// Response is the body of a POST /v1/records answer. With the request
// header "Prefer: return=minimal" Results lists only the records not
// accepted (each with its index); the counts are always complete.
type Response struct {
	Accepted   int      `json:"accepted"`
	Duplicates int      `json:"duplicates"`
	Rejected   int      `json:"rejected"`
	Conflicts  int      `json:"conflicts"`
	Results    []Result `json:"results"`
}

// Held is what the log says of a record whose id it already holds.
type Held struct {
	// Conflict: the holder is a different record; otherwise the same.
	Conflict bool
	// Leaf is the holder's leaf index, when LeafKnown (a record still
	// being appended has none yet).
	Leaf      uint64
	LeafKnown bool
}

// InLog reports, for each message whose record id the Merkle log already
// holds, whether it holds this very record (a retry, answered
// "duplicate", even after JetStream's duplicate window) or a different one
// (answered "conflict", never published). Messages it does not mention are
// new. It is nil when the log is not in this process; the signer then
// finds conflicts itself and dead-letters them.
type InLog func(ctx context.Context, msgs []publish.Message) (map[int]Held, error)

// Handler serves POST /v1/records.
type Handler struct {
	cfg     Config
	pub     *publish.Publisher
	inLog   InLog
	limiter *ratelimit.Limiter
	log     *slog.Logger
}

// NewHandler builds the ingest handler. It expects to run behind
// auth.Keys.Require(auth.ScopeIngest, ...).
func NewHandler(cfg Config, pub *publish.Publisher, inLog InLog, limiter *ratelimit.Limiter, logger *slog.Logger) *Handler {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultConfig.MaxBodyBytes
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = DefaultConfig.MaxRecords
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = DefaultConfig.PublishTimeout
	}
	return &Handler{cfg: cfg, pub: pub, inLog: inLog, limiter: limiter, log: logger}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpx.WriteError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	claims, ok := auth.FromContext(r.Context())
	if !ok {
		httpx.WriteError(w, http.StatusUnauthorized, "no authenticated principal")
		return
	}
	// An over-rate principal is refused before its body costs anything;
	// the records it holds are taken from its rate once counted, below.
	if ok, wait := h.limiter.Ready(claims.Principal); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait)))
		httpx.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("principal %s is over its rate limit; retry after %s", claims.Principal, wait.Round(time.Millisecond)))
		return
	}
	charge := h.cfg.Budget.start()
	defer charge.release()
	body, err := readBody(r.Context(), r, h.cfg.MaxBodyBytes, charge)
	if err == nil {
		// Decoding holds a multiple of the body until the answer.
		err = charge.take(r.Context(), decodeFactor*int64(len(body)))
	}
	switch {
	case errors.Is(err, errOverBudget):
		w.Header().Set("Retry-After", "1")
		httpx.WriteError(w, http.StatusServiceUnavailable, err.Error()+"; retry shortly")
		return
	case errors.Is(err, errTooLarge):
		httpx.WriteError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	case errors.Is(err, errUnsupportedCode):
		httpx.WriteError(w, http.StatusUnsupportedMediaType, err.Error())
		return
	case err != nil:
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	raws, err := splitRecords(body)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(raws) > h.cfg.MaxRecords {
		httpx.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d records in one request; at most %d", len(raws), h.cfg.MaxRecords))
		return
	}
	if ok, wait, tooBig := h.limiter.Take(claims.Principal, len(raws)); !ok {
		if tooBig {
			httpx.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d records exceed the per-principal burst of %d; split the batch", len(raws), h.limiter.Burst()))
			return
		}
		w.Header().Set("Retry-After", strconv.Itoa(ratelimit.RetryAfterSeconds(wait)))
		httpx.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("principal %s is over its rate limit; retry after %s", claims.Principal, wait.Round(time.Millisecond)))
		return
	}
	resp, status := h.ingest(r.Context(), claims.Principal, raws)
	if status >= 500 {
		w.Header().Set("Retry-After", "1")
	}
	if resp == nil {
		httpx.WriteError(w, status, "records were not confirmed stored; retry the request (it is idempotent)")
		return
	}
	if prefersMinimal(r.Header.Values("Prefer")) {
		resp.minimal()
		w.Header().Set("Preference-Applied", "return=minimal")
	}
	httpx.WriteJSON(w, status, resp)
}

// minimal drops the results of accepted records: a gateway posting
// thousands of records a request needs the counts and what to do about
// the others, and listing every accepted record costs both sides more
// than the rest of the answer (an encode here, a decode there).
func (r *Response) minimal() {
	kept := r.Results[:0]
	for _, res := range r.Results {
		if res.Status != StatusAccepted {
			kept = append(kept, res)
		}
	}
	r.Results = kept
}

// prefersMinimal reports whether the request's Prefer headers (RFC 7240)
// ask for return=minimal. Hand-written: net/http has no parser for
// Prefer, and only this one preference, by its name and value, matters
// here (parameters after ';' are ignored, names are case-insensitive,
// the value may be quoted).
func prefersMinimal(headers []string) bool {
	for _, h := range headers {
		for pref := range strings.SplitSeq(h, ",") {
			pref, _, _ = strings.Cut(pref, ";")
			name, value, ok := strings.Cut(pref, "=")
			if ok && strings.EqualFold(strings.TrimSpace(name), "return") &&
				strings.EqualFold(strings.Trim(strings.TrimSpace(value), `"`), "minimal") {
				return true
			}
		}
	}
	return false
}

// ingest decodes, stamps and publishes the records; the returned response
// describes every record, and the status is 202 when anything was stored
// or already present.
func (h *Handler) ingest(ctx context.Context, principal string, raws [][]byte) (*Response, int) {
	resp := &Response{Results: make([]Result, len(raws))}
	var msgs []publish.Message
	var msgIdx []int // result index of each message
	firstByID := map[string][]byte{}
	for i, raw := range raws {
		res := &resp.Results[i]
		res.Index = i
		// The principal comes from the token, never from the body.
		rec, canon, err := schemas.DecodeFrom(raw, principal)
		if err != nil {
			res.Status = StatusRejected
			res.Errors = fieldErrors(err)
			continue
		}
		res.RecordID = rec.RecordID
		if first, dup := firstByID[rec.RecordID]; dup {
			if bytes.Equal(first, canon) {
				res.Status = StatusDuplicate
			} else {
				res.Status = StatusConflict
				res.Errors = conflictErrors
			}
			continue
		}
		firstByID[rec.RecordID] = canon
		res.Status = StatusAccepted
		msgs = append(msgs, publish.Message{RecordID: rec.RecordID, Data: canon})
		msgIdx = append(msgIdx, i)
	}
	if h.inLog != nil && len(msgs) > 0 {
		known, err := h.inLog(ctx, msgs)
		if err != nil {
			h.log.ErrorContext(ctx, "log index lookup failed", "err", err)
			return nil, http.StatusServiceUnavailable
		}
		kept, keptIdx := msgs[:0:0], msgIdx[:0:0]
		for j, m := range msgs {
			if held, ok := known[j]; ok {
				res := &resp.Results[msgIdx[j]]
				if !held.Conflict {
					res.Status = StatusDuplicate
					continue
				}
				res.Status, res.Errors = StatusConflict, conflictErrors
				attrs := []any{"record_id", m.RecordID, "principal", principal}
				if held.LeafKnown {
					res.LeafIndex = &held.Leaf
					attrs = append(attrs, "holder_leaf", held.Leaf)
				}
				h.log.WarnContext(ctx, "record id conflict: refused a record whose id the log holds with other content", attrs...)
				continue
			}
			kept, keptIdx = append(kept, m), append(keptIdx, msgIdx[j])
		}
		msgs, msgIdx = kept, keptIdx
	}
	if len(msgs) > 0 {
		pctx, cancel := context.WithTimeout(ctx, h.cfg.PublishTimeout)
		defer cancel()
		acks, err := h.pub.Publish(pctx, msgs)
		if err != nil {
			h.log.ErrorContext(ctx, "publish failed", "err", err, "records", len(msgs), "principal", principal)
			return nil, http.StatusServiceUnavailable
		}
		for j, a := range acks {
			res := &resp.Results[msgIdx[j]]
			res.StreamSeq = a.Seq
			if a.Duplicate {
				res.Status = StatusDuplicate
			}
		}
	}
	for _, r := range resp.Results {
		switch r.Status {
		case StatusAccepted:
			resp.Accepted++
		case StatusDuplicate:
			resp.Duplicates++
		case StatusConflict:
			resp.Conflicts++
		default:
			resp.Rejected++
		}
	}
	h.log.InfoContext(ctx, "ingested", "principal", principal, "accepted", resp.Accepted, "duplicates", resp.Duplicates, "rejected", resp.Rejected, "conflicts", resp.Conflicts)
	h.cfg.Metrics.Records(resp.Accepted, resp.Duplicates, resp.Rejected)
	h.cfg.Metrics.Conflicts(resp.Conflicts)
	if resp.Accepted+resp.Duplicates == 0 {
		if resp.Conflicts > 0 {
			return resp, http.StatusConflict
		}
		return resp, http.StatusBadRequest
	}
	return resp, http.StatusAccepted
}

// conflictErrors is what a conflict's result says. It never names the
// holder's principal or content: those are someone else's.
var conflictErrors = []schemas.FieldError{{Path: "$.record_id", Message: "this record id is held by a different record (other content or another principal); nothing was stored: send the record under a new id"}}

// fieldErrors turns a decode error into per-field errors for the client.
func fieldErrors(err error) []schemas.FieldError {
	var ve *schemas.ValidationError
	if errors.As(err, &ve) {
		return ve.Errors
	}
	return []schemas.FieldError{{Path: "$", Message: err.Error()}}
}
