// Package httpx holds the JSON response conventions every proofline HTTP
// API shares, so that clients see one error shape everywhere.
package httpx

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail names the failure: a stable code for programs, a message
// for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	// Encoded before the status is sent: a value JSON cannot hold (a NaN)
	// is a 500 with the error shape, not a 200 with an empty body.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		_ = enc.Encode(ErrorBody{Error: ErrorDetail{Code: Code(status), Message: "the answer could not be encoded as JSON"}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// WriteError writes an error response; the code is derived from status.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: Code(status), Message: msg}})
}

// WriteErrorCode writes an error response with a code more precise than
// the status's own (e.g. log_integrity for a 503).
func WriteErrorCode(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// Code is the stable error code for an HTTP status.
func Code(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusRequestURITooLong:
		return "uri_too_long"
	case http.StatusUnsupportedMediaType:
		return "unsupported_encoding"
	case http.StatusTooEarly:
		return "not_yet_provable"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal"
	}
	return "error"
}

// JSONErrors gives the error answers h did not write itself — the
// router's own 404 and 405, a file server's 403/404/500, anything written
// with http.Error — the JSON error shape every other answer has, keeping
// their status and headers (Allow on a 405). Answers already in JSON, and
// successes in any format, pass through untouched.
func JSONErrors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jw := &jsonErrorWriter{ResponseWriter: w}
		h.ServeHTTP(jw, r)
		jw.finish()
	})
}

// jsonErrorWriter rewrites a plain-text error answer into ErrorBody. Its
// text (as http.Error writes it) becomes the message.
type jsonErrorWriter struct {
	http.ResponseWriter
	status  int
	rewrite bool
	msg     []byte
}

func (w *jsonErrorWriter) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	h := w.Header()
	if status >= 400 && !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		w.rewrite = true
		h.Del("Content-Length")
		h.Del("X-Content-Type-Options")
		return // written by finish, with the JSON body
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *jsonErrorWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.rewrite {
		if len(w.msg) < 1024 {
			w.msg = append(w.msg, b...)
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes through, for answers that stream.
func (w *jsonErrorWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.rewrite {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *jsonErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *jsonErrorWriter) finish() {
	if !w.rewrite {
		return
	}
	msg := strings.TrimSpace(string(w.msg))
	if len(msg) > 512 {
		msg = msg[:512]
	}
	if msg == "" {
		msg = http.StatusText(w.status)
	}
	WriteError(w.ResponseWriter, w.status, msg)
}
