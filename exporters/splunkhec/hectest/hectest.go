// Package hectest is a test receiver for Splunk's HTTP Event Collector.
//
// No Splunk can be installed on the machines this project is built on, so
// this receiver implements the documented HEC contract instead, errors
// included, for the sink's tests and benchmark: token authentication
// (401 code 2 without a token, 403 code 4 for a wrong one), the request
// channel that indexer acknowledgement requires (400 code 10), gzip bodies
// of concatenated event objects, per-event validation that answers 400
// code 6 / 12 / 13 with `invalid-event-number` (events before the invalid
// one are indexed, as HEC does), 503 code 9 "Server is busy" with
// Retry-After and 429 when told to, ackIds per channel and the
// /services/collector/ack endpoint, whose answers turn true once the batch
// is "indexed" (or never, for a lost ack).
package hectest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/klauspost/compress/gzip"
)

// Receiver is a running HEC test receiver.
type Receiver struct {
	*httptest.Server
	Token string
	// Ack makes the token require a channel and answer ackIds.
	Ack bool

	mu      sync.Mutex
	indexed [][]byte // each event as received: decoded only by Indexed,
	// so that a benchmark's receiver in the same process costs the
	// runner little CPU (decoding every event into maps and keeping them
	// cost a quarter of the process and most of its GC).
	faults   []int          // scripted statuses for the next event posts: 503, 429, -1 (ack lost)
	poison   map[string]int // record ids answered as invalid events, by code
	nextAck  map[string]int64
	acks     map[string]map[int64]bool // channel → ackId → indexed
	requests int
}

// New starts a receiver on 127.0.0.1:0.
func New(token string, ack bool) *Receiver {
	r := &Receiver{Token: token, Ack: ack, poison: map[string]int{}, nextAck: map[string]int64{}, acks: map[string]map[int64]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /services/collector/event", r.event)
	mux.HandleFunc("POST /services/collector/ack", r.ack)
	mux.HandleFunc("GET /services/collector/health", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, 200, map[string]any{"text": "HEC is healthy", "code": 17})
	})
	r.Server = httptest.NewServer(mux)
	return r
}

// Fail scripts the answers to the next event posts: 503 (busy, code 9,
// Retry-After: 1), 429, or -1 (accepted, but its ack never turns true).
func (r *Receiver) Fail(statuses ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, statuses...)
}

// Poison makes an event whose record id is id invalid (code 6, as HEC
// answers for an event it cannot parse), wherever it appears.
func (r *Receiver) Poison(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.poison[id] = 6
}

// Indexed returns the events indexed so far.
func (r *Receiver) Indexed() []map[string]any {
	r.mu.Lock()
	raw := append([][]byte(nil), r.indexed...)
	r.mu.Unlock()
	out := make([]map[string]any, len(raw))
	for i, b := range raw {
		if err := json.Unmarshal(b, &out[i]); err != nil {
			panic("hectest: an indexed event no longer decodes: " + err.Error())
		}
	}
	return out
}

// IndexedCount counts the events indexed so far.
func (r *Receiver) IndexedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.indexed)
}

// Requests counts event posts.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

func reply(w http.ResponseWriter, status int, body map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (r *Receiver) auth(w http.ResponseWriter, req *http.Request) bool {
	h := req.Header.Get("Authorization")
	if h == "" {
		reply(w, 401, map[string]any{"text": "Token is required", "code": 2})
		return false
	}
	if h != "Splunk "+r.Token {
		reply(w, 403, map[string]any{"text": "Invalid token", "code": 4})
		return false
	}
	return true
}

func channel(req *http.Request) string {
	if c := req.Header.Get("X-Splunk-Request-Channel"); c != "" {
		return c
	}
	return req.URL.Query().Get("channel")
}

func (r *Receiver) event(w http.ResponseWriter, req *http.Request) {
	if !r.auth(w, req) {
		return
	}
	ch := channel(req)
	if r.Ack && ch == "" {
		reply(w, 400, map[string]any{"text": "Data channel is missing", "code": 10})
		return
	}
	r.mu.Lock()
	r.requests++
	fault := 0
	if len(r.faults) > 0 {
		fault, r.faults = r.faults[0], r.faults[1:]
	}
	r.mu.Unlock()
	switch fault {
	case 503:
		w.Header().Set("Retry-After", "1")
		reply(w, 503, map[string]any{"text": "Server is busy", "code": 9})
		return
	case 429:
		w.Header().Set("Retry-After", "1")
		reply(w, 429, map[string]any{"text": "Too many requests", "code": 9})
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			reply(w, 400, map[string]any{"text": "Invalid data format", "code": 6, "invalid-event-number": 0})
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		reply(w, 400, map[string]any{"text": "Invalid data format", "code": 6, "invalid-event-number": 0})
		return
	}
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	var good [][]byte
	n := 0
	var invalid map[string]any
	for {
		v, err := dec.ReadValue()
		if errors.Is(err, io.EOF) {
			break
		}
		var ev struct {
			Event  jsontext.Value `json:"event"`
			Fields jsontext.Value `json:"fields"`
		}
		if err != nil || v.Kind() != '{' || jsonv2.Unmarshal(v, &ev) != nil {
			invalid = map[string]any{"text": "Invalid data format", "code": 6, "invalid-event-number": n}
			break
		}
		if len(ev.Event) == 0 {
			invalid = map[string]any{"text": "Event field is required", "code": 12, "invalid-event-number": n}
			break
		}
		var str string
		if ev.Event.Kind() == '"' && jsonv2.Unmarshal(ev.Event, &str) == nil && strings.TrimSpace(str) == "" {
			invalid = map[string]any{"text": "Event field cannot be blank", "code": 13, "invalid-event-number": n}
			break
		}
		var f struct {
			RecordID any `json:"record_id"`
		}
		if ev.Fields.Kind() == '{' && jsonv2.Unmarshal(ev.Fields, &f) == nil {
			r.mu.Lock()
			code := r.poison[asString(f.RecordID)]
			r.mu.Unlock()
			if code != 0 {
				invalid = map[string]any{"text": "Invalid data format", "code": code, "invalid-event-number": n}
				break
			}
		}
		good = append(good, bytes.Clone(v))
		n++
	}
	if n == 0 && invalid == nil {
		reply(w, 400, map[string]any{"text": "No data", "code": 5})
		return
	}
	// HEC indexes the events before an invalid one.
	r.mu.Lock()
	defer r.mu.Unlock()
	r.indexed = append(r.indexed, good...)
	if invalid != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		_ = json.NewEncoder(w).Encode(invalid)
		return
	}
	resp := map[string]any{"text": "Success", "code": 0}
	if r.Ack {
		id := r.nextAck[ch]
		r.nextAck[ch]++
		if r.acks[ch] == nil {
			r.acks[ch] = map[int64]bool{}
		}
		r.acks[ch][id] = fault != -1
		resp["ackId"] = id
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}

func (r *Receiver) ack(w http.ResponseWriter, req *http.Request) {
	if !r.auth(w, req) {
		return
	}
	if !r.Ack {
		reply(w, 400, map[string]any{"text": "ACK is disabled", "code": 14})
		return
	}
	ch := channel(req)
	if ch == "" {
		reply(w, 400, map[string]any{"text": "Data channel is missing", "code": 10})
		return
	}
	var q struct {
		Acks []int64 `json:"acks"`
	}
	if err := json.NewDecoder(req.Body).Decode(&q); err != nil {
		reply(w, 400, map[string]any{"text": "Invalid data format", "code": 6})
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]bool{}
	for _, id := range q.Acks {
		out[strconv.FormatInt(id, 10)] = r.acks[ch][id]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"acks": out})
}
