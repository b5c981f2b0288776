// Package estest is a test receiver for Elasticsearch's `_bulk` API.
//
// No Elasticsearch (or OpenSearch) server can be installed on the machines
// this project is built on — Debian, npm and the Go module proxy carry
// clients only — so this receiver implements the documented `_bulk`
// contract instead, errors included, for the sink's tests:
//
//   - `POST|PUT /_bulk` and `/{index}/_bulk` (the path's index is the
//     default for actions without `_index`); every answer carries
//     `X-Elastic-Product: Elasticsearch`, as Elasticsearch does since 7.14;
//   - authentication: `Authorization: ApiKey <encoded>` or `Basic`; none →
//     401 security_exception "missing authentication credentials" with
//     WWW-Authenticate; wrong ones → 401 "unable to authenticate";
//   - `Content-Type` application/json or application/x-ndjson (else 406),
//     `Content-Encoding: gzip` bodies;
//   - NDJSON: action/metadata lines `create`, `index`, `delete` (each but
//     delete followed by its source line); the body must end with a
//     newline (400 illegal_argument_exception); a malformed action line or a
//     missing index fails the whole request (400);
//   - `create` semantics: a new `_id` is stored (201 created), an existing one
//     answers that item 409 version_conflict_engine_exception "document
//     already exists"; without `_id` an id is generated; `index` overwrites;
//   - a response of 200 with `errors: true` and one item per action, in
//     request order, each with its own status and error {type, reason};
//   - a source that is not a JSON object, or a document the test poisoned,
//     is refused per item with 400 mapper_parsing_exception;
//   - on command: per-item 429 es_rejected_execution_exception (a full write
//     queue), and whole-request 429 es_rejected_execution_exception or 503
//     cluster_block_exception (no Retry-After: Elasticsearch sends none);
//   - `filter_path` and other query parameters are ignored: the full
//     response is a superset of any filtered one.
//
// Not implemented: `update` actions (answered per item with 400), mappings
// (no type conflicts beyond poisoned documents), refresh and versioning
// parameters, routing.
package estest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Options are the credentials the receiver accepts (any one of them).
type Options struct {
	// APIKey is the encoded API key (base64 of id:key), as
	// `Authorization: ApiKey <APIKey>` carries it.
	APIKey string
	// Username and Password are basic-auth credentials.
	Username, Password string
}

// Bulk is one `_bulk` request the receiver answered item by item.
type Bulk struct {
	IDs      []string
	Statuses []int
}

// Stats counts what the receiver did.
type Stats struct {
	Requests  int // _bulk requests, including refused ones
	Created   int // documents created
	Conflicts int // create items answered 409
	Throttled int // items answered 429
	Refused   int // items answered 400 (mapper_parsing_exception, …)
}

// Receiver is a running `_bulk` test receiver.
type Receiver struct {
	*httptest.Server
	opts Options

	mu         sync.Mutex
	indices    map[string]map[string]json.RawMessage
	versions   map[string]int64
	seqNo      int64
	faults     []int
	throttle   int
	poison     map[string]bool
	bulks      []Bulk
	stats      Stats
	sawGzip    bool
	sawHeaders []http.Header
}

// New starts a receiver on 127.0.0.1:0.
func New(o Options) *Receiver {
	r := &Receiver{opts: o, indices: map[string]map[string]json.RawMessage{}, versions: map[string]int64{}, poison: map[string]bool{}}
	mux := http.NewServeMux()
	for _, m := range []string{"POST", "PUT"} {
		mux.HandleFunc(m+" /_bulk", r.bulk)
		mux.HandleFunc(m+" /{index}/_bulk", r.bulk)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		if r.auth(w, req) {
			reply(w, 200, map[string]any{"name": "estest", "cluster_name": "estest",
				"version": map[string]any{"number": "9.0.0", "build_flavor": "default"}, "tagline": "You Know, for Search"})
		}
	})
	r.Server = httptest.NewServer(mux)
	return r
}

// Fail scripts whole-request answers for the next `_bulk` requests: 429
// (es_rejected_execution_exception), 503 (cluster_block_exception), or
// any other status (a generic error of that status).
func (r *Receiver) Fail(statuses ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, statuses...)
}

// ThrottleItems answers the next n items, wherever they fall, with 429
// es_rejected_execution_exception, as a node with a full write queue does.
func (r *Receiver) ThrottleItems(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.throttle += n
}

// Poison makes documents with these `_id`s unparseable (400
// mapper_parsing_exception), every time they are sent.
func (r *Receiver) Poison(ids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		r.poison[id] = true
	}
}

// Docs returns a copy of the documents of index, by `_id`.
func (r *Receiver) Docs(index string) map[string]json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]json.RawMessage, len(r.indices[index]))
	for k, v := range r.indices[index] {
		out[k] = v
	}
	return out
}

// Bulks returns the item-level requests answered so far.
func (r *Receiver) Bulks() []Bulk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Bulk(nil), r.bulks...)
}

// Stats returns the counters.
func (r *Receiver) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// SawGzip reports whether a gzip-encoded request body arrived.
func (r *Receiver) SawGzip() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sawGzip
}

func reply(w http.ResponseWriter, status int, body any) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// errorReply is Elasticsearch's whole-request error body.
func errorReply(w http.ResponseWriter, status int, typ, reason string) {
	cause := map[string]any{"type": typ, "reason": reason}
	reply(w, status, map[string]any{"error": map[string]any{"root_cause": []any{cause}, "type": typ, "reason": reason}, "status": status})
}

func (r *Receiver) auth(w http.ResponseWriter, req *http.Request) bool {
	h := req.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		w.Header().Add("WWW-Authenticate", `Basic realm="security", charset="UTF-8"`)
		w.Header().Add("WWW-Authenticate", "ApiKey")
		errorReply(w, 401, "security_exception", fmt.Sprintf("missing authentication credentials for REST request [%s]", req.URL.RequestURI()))
		return false
	case strings.EqualFold(scheme, "ApiKey") && r.opts.APIKey != "" && cred == r.opts.APIKey:
		return true
	case strings.EqualFold(scheme, "Basic") && r.opts.Username != "":
		if u, p, ok := req.BasicAuth(); ok && u == r.opts.Username && p == r.opts.Password {
			return true
		}
		u, _, _ := req.BasicAuth()
		w.Header().Add("WWW-Authenticate", `Basic realm="security", charset="UTF-8"`)
		errorReply(w, 401, "security_exception", fmt.Sprintf("unable to authenticate user [%s] for REST request [%s]", u, req.URL.RequestURI()))
		return false
	default:
		w.Header().Add("WWW-Authenticate", "ApiKey")
		errorReply(w, 401, "security_exception", "unable to authenticate with provided credentials and anonymous access is not allowed for this request")
		return false
	}
}

// action is one parsed action/metadata line and its source.
type action struct {
	op     string
	index  string
	id     string
	source []byte
}

func (r *Receiver) bulk(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.stats.Requests++
	r.sawHeaders = append(r.sawHeaders, req.Header.Clone())
	r.mu.Unlock()
	if !r.auth(w, req) {
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/json" && mt != "application/x-ndjson" {
			errorReply(w, 406, "media_type_header_exception", fmt.Sprintf("Content-Type header [%s] is not supported", ct))
			return
		}
	}
	r.mu.Lock()
	fault := 0
	if len(r.faults) > 0 {
		fault, r.faults = r.faults[0], r.faults[1:]
	}
	r.mu.Unlock()
	switch fault {
	case 0:
	case 429:
		errorReply(w, 429, "es_rejected_execution_exception",
			"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1024, max_coordinating_and_primary_bytes=1024]")
		return
	case 503:
		errorReply(w, 503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];")
		return
	default:
		errorReply(w, fault, "exception", http.StatusText(fault))
		return
	}
	var body io.Reader = req.Body
	if strings.EqualFold(req.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			errorReply(w, 400, "parse_exception", "request body is not valid gzip: "+err.Error())
			return
		}
		body = zr
		r.mu.Lock()
		r.sawGzip = true
		r.mu.Unlock()
	}
	raw, err := io.ReadAll(io.LimitReader(body, 100<<20))
	if err != nil {
		errorReply(w, 400, "parse_exception", err.Error())
		return
	}
	actions, status, typ, reason := parse(raw, req.PathValue("index"))
	if status != 0 {
		errorReply(w, status, typ, reason)
		return
	}
	start := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	items := make([]any, 0, len(actions))
	errs := false
	b := Bulk{}
	for _, a := range actions {
		res := r.apply(&a)
		if _, failed := res["error"]; failed {
			errs = true
		}
		b.IDs = append(b.IDs, a.id)
		b.Statuses = append(b.Statuses, res["status"].(int))
		items = append(items, map[string]any{a.op: res})
	}
	r.bulks = append(r.bulks, b)
	reply(w, 200, map[string]any{"took": time.Since(start).Milliseconds(), "errors": errs, "items": items})
}

// parse reads the NDJSON body; a non-zero status is a whole-request error.
func parse(raw []byte, pathIndex string) ([]action, int, string, string) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, 400, "parse_exception", "request body is required"
	}
	if raw[len(raw)-1] != '\n' {
		return nil, 400, "illegal_argument_exception", `The bulk request must be terminated by a newline [\n]`
	}
	lines := bytes.Split(raw[:len(raw)-1], []byte{'\n'})
	var out []action
	for i := 0; i < len(lines); i++ {
		line := bytes.TrimSpace(lines[i])
		if len(line) == 0 {
			continue
		}
		var meta map[string]map[string]any
		if err := json.Unmarshal(line, &meta); err != nil || len(meta) != 1 {
			return nil, 400, "illegal_argument_exception", fmt.Sprintf("Malformed action/metadata line [%d], expected START_OBJECT or END_OBJECT", i+1)
		}
		var a action
		for op, md := range meta {
			a.op = op
			a.index, _ = md["_index"].(string)
			a.id, _ = md["_id"].(string)
		}
		switch a.op {
		case "create", "index", "delete", "update":
		default:
			return nil, 400, "illegal_argument_exception", fmt.Sprintf("Malformed action/metadata line [%d], expected field [create], [delete], [index] or [update] but found [%s]", i+1, a.op)
		}
		if a.index == "" {
			a.index = pathIndex
		}
		if a.index == "" {
			return nil, 400, "action_request_validation_exception", "Validation Failed: 1: index is missing;"
		}
		if a.op != "delete" {
			i++
			if i >= len(lines) {
				return nil, 400, "illegal_argument_exception", fmt.Sprintf("The bulk request must be terminated by a newline [\\n]; action line [%d] has no source", i)
			}
			a.source = lines[i]
		}
		out = append(out, a)
	}
	return out, 0, "", ""
}

func itemError(a *action, status int, typ, reason string) map[string]any {
	return map[string]any{"_index": a.index, "_id": a.id, "status": status,
		"error": map[string]any{"type": typ, "reason": reason, "index": a.index, "shard": "0", "index_uuid": "estest"}}
}

func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// apply performs one action; r.mu is held.
func (r *Receiver) apply(a *action) map[string]any {
	if a.op == "update" {
		r.stats.Refused++
		return itemError(a, 400, "illegal_argument_exception", "estest does not implement update")
	}
	if r.throttle > 0 {
		r.throttle--
		r.stats.Throttled++
		return itemError(a, 429, "es_rejected_execution_exception",
			"rejected execution of primary operation [shard_detail=[estest][0][P], shard_write_bytes=0, max_write_bytes=0]")
	}
	docs := r.indices[a.index]
	if docs == nil {
		docs = map[string]json.RawMessage{}
		r.indices[a.index] = docs
	}
	key := a.index + "\x00" + a.id
	if a.op == "delete" {
		if _, ok := docs[a.id]; !ok {
			return map[string]any{"_index": a.index, "_id": a.id, "result": "not_found", "status": 404}
		}
		delete(docs, a.id)
		r.versions[key]++
		return r.ok(a, "deleted", 200)
	}
	var obj map[string]any
	if err := json.Unmarshal(a.source, &obj); err != nil {
		r.stats.Refused++
		return itemError(a, 400, "mapper_parsing_exception", "failed to parse: "+err.Error())
	}
	if r.poison[a.id] {
		r.stats.Refused++
		e := itemError(a, 400, "mapper_parsing_exception", "failed to parse field [proofline] of type [keyword] in document with id '"+a.id+"'.")
		e["error"].(map[string]any)["caused_by"] = map[string]any{"type": "illegal_state_exception", "reason": "Can't get text on a START_OBJECT"}
		return e
	}
	if a.id == "" {
		a.id = newID()
		key = a.index + "\x00" + a.id
	}
	_, exists := docs[a.id]
	if a.op == "create" && exists {
		r.stats.Conflicts++
		return itemError(a, 409, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, document already exists (current version [%d])", a.id, r.versions[key]))
	}
	docs[a.id] = append(json.RawMessage(nil), a.source...)
	r.versions[key]++
	if exists {
		return r.ok(a, "updated", 200)
	}
	r.stats.Created++
	return r.ok(a, "created", 201)
}

func (r *Receiver) ok(a *action, result string, status int) map[string]any {
	r.seqNo++
	return map[string]any{"_index": a.index, "_id": a.id, "_version": r.versions[a.index+"\x00"+a.id], "result": result,
		"_shards": map[string]any{"total": 2, "successful": 1, "failed": 0}, "_seq_no": r.seqNo - 1, "_primary_term": 1, "status": status}
}

// Headers returns the headers of every `_bulk` request, in order.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.sawHeaders...)
}

// EncodeAPIKey is how Elasticsearch encodes an API key for the ApiKey
// scheme: base64 of "id:api_key" (the `encoded` field of the create API
// key response).
func EncodeAPIKey(id, key string) string {
	return base64.StdEncoding.EncodeToString([]byte(id + ":" + key))
}
