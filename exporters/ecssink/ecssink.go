// Package ecssink is the exporters' Elasticsearch sink: Elastic Common
// Schema documents through the `_bulk` API.
//
// Every call becomes one document created with `_id = ORIGIN:LEAF`
// (`create`, never `index`), so a redelivered leaf — a batch resent after a
// timeout, a crash or a replay — is answered 409
// version_conflict_engine_exception, which this sink counts as delivered:
// the index holds exactly one document per leaf, however often the runner
// delivers it. Checkpoints are documents of their own, `_id =
// ORIGIN:checkpoint:SIZE`, in their own index.
//
// Elasticsearch answers a `_bulk` request 200 and reports each item's
// status; this sink reads every one before Send returns:
//
//   - 201 created, or 409 version_conflict_engine_exception: delivered;
//   - 429 (es_rejected_execution_exception) and 5xx items: only those items
//     are resent, with exponential backoff, up to ItemRetries times; then
//     the batch goes back to the runner as throttled (429) or transient,
//     and its resend is harmless because of the 409s;
//   - 401/403 items, or an index that does not exist: the sink is
//     misconfigured (FatalError: the cursor stays);
//   - any other 4xx item (mapper_parsing_exception, …): that document can
//     never be indexed; it is dead-lettered with the error type and reason
//     (RejectedError) and the rest of the batch goes on.
//
// Whole-request answers: 401/403 → FatalError; 429 → ThrottleError (its
// Retry-After, else ThrottleWait); 413 → the batch is split; 5xx →
// transient; any other status → FatalError (a request every batch would
// repeat, such as a wrong URL path).
//
// Why not the official client's esutil.BulkIndexer: it flushes from
// background workers on size or interval rather than when Send asks, and
// on a whole-request failure it reports only a formatted error string
// (status and Retry-After lost), so the sink could not tell a throttle from
// a credentials error; its transport also retries whole requests on its
// own unless told not to. The request here is small (NDJSON over one POST),
// and the exporters' contract needs every item's result in hand.
package ecssink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/encode"
)

// Default index names: data streams matching Elasticsearch's built-in
// `logs-*-*` template (which maps ECS fields), one dataset each, so that
// event.dataset matches the data stream's dataset. Data streams accept
// only `create`, which is what this sink sends.
const (
	DefaultIndex           = "logs-proofline.calls-default"
	DefaultCheckpointIndex = "logs-proofline.checkpoints-default"
)

// Config configures the sink.
type Config struct {
	// URL is the Elasticsearch base URL, e.g. https://es.example.com:9200.
	URL string
	// Index receives call documents, CheckpointIndex checkpoint documents.
	Index, CheckpointIndex string
	// APIKey is the encoded API key (the `encoded` field of the create API
	// key response), sent as `Authorization: ApiKey …`. Or Username and
	// Password for basic authentication.
	APIKey             string
	Username, Password string
	// Version is the proofline version (observer.version).
	Version string
	// ItemRetries is how often throttled or failed items are resent within
	// one Send (default 5); RetryWait the first wait (default 200ms,
	// doubling up to 5s).
	ItemRetries int
	RetryWait   time.Duration
	// ThrottleWait is the wait after a whole-request 429 that carries no
	// Retry-After (Elasticsearch sends none; default 1s).
	ThrottleWait time.Duration
	// Client is the HTTP client (its transport carries TLS settings).
	Client *http.Client
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("elasticsearch: url %q: want https://host:port", c.URL))
	}
	basic := c.Username != "" || c.Password != ""
	switch {
	case c.APIKey != "" && basic:
		errs = append(errs, errors.New("elasticsearch: give an API key or a username and password, not both"))
	case c.APIKey == "" && !basic:
		errs = append(errs, errors.New("elasticsearch: credentials are required (api_key_file, or username and password_file)"))
	case basic && (c.Username == "" || c.Password == ""):
		errs = append(errs, errors.New("elasticsearch: username and password go together"))
	}
	for _, ix := range []string{c.Index, c.CheckpointIndex} {
		if ix != "" && (ix != strings.ToLower(ix) || strings.ContainsAny(ix, `\/*?"<>| ,#`) || strings.HasPrefix(ix, "_")) {
			errs = append(errs, fmt.Errorf("elasticsearch: index %q: lowercase, no \\ / * ? \" < > | space , #, not starting with _", ix))
		}
	}
	if c.ItemRetries < 0 || c.RetryWait < 0 || c.ThrottleWait < 0 {
		errs = append(errs, errors.New("elasticsearch: retries and waits must not be negative"))
	}
	return errors.Join(errs...)
}

// Sink sends batches to one Elasticsearch cluster.
type Sink struct {
	cfg  Config
	bulk string
}

// New makes a sink.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	if cfg.Index == "" {
		cfg.Index = DefaultIndex
	}
	if cfg.CheckpointIndex == "" {
		cfg.CheckpointIndex = DefaultCheckpointIndex
	}
	if cfg.ItemRetries == 0 {
		cfg.ItemRetries = 5
	}
	if cfg.RetryWait == 0 {
		cfg.RetryWait = 200 * time.Millisecond
	}
	if cfg.ThrottleWait == 0 {
		cfg.ThrottleWait = time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 60 * time.Second}
	}
	// filter_path keeps the answer to what the sink reads; a server that
	// ignores it sends a superset.
	return &Sink{cfg: cfg, bulk: cfg.URL + "/_bulk?filter_path=errors,items.*._id,items.*.status,items.*.error.type,items.*.error.reason"}, nil
}

// item is one action + document pair (idx -1: the checkpoint).
type item struct {
	idx  int
	id   string
	body []byte // both NDJSON lines, newline-terminated
}

func (s *Sink) encode(b exporters.Batch) ([]item, map[int]string) {
	var items []item
	rejected := map[int]string{}
	add := func(idx int, index, id string, doc any) error {
		src, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		meta, _ := json.Marshal(map[string]any{"create": map[string]string{"_index": index, "_id": id}})
		body := make([]byte, 0, len(meta)+len(src)+2)
		body = append(append(append(append(body, meta...), '\n'), src...), '\n')
		items = append(items, item{idx: idx, id: id, body: body})
		return nil
	}
	if b.Anchor != nil {
		_ = add(-1, s.cfg.CheckpointIndex, encode.ECSAnchorID(b.Anchor), encode.ECSAnchor(b.Anchor, s.cfg.Version))
	}
	for i, e := range b.Events {
		doc, err := encode.ECS(e, s.cfg.Version)
		if err == nil {
			err = add(i, s.cfg.Index, encode.ECSID(e.Evidence), doc)
		}
		if err != nil {
			rejected[i] = "encode: " + err.Error()
		}
	}
	return items, rejected
}

// Send delivers b; see the package comment for how answers are classified.
func (s *Sink) Send(ctx context.Context, b exporters.Batch) error {
	items, rejected := s.encode(b)
	if err := s.deliver(ctx, items, rejected); err != nil {
		return err
	}
	if len(rejected) > 0 {
		return &exporters.RejectedError{Reasons: rejected}
	}
	return nil
}

// deliver sends items until each one is created, already there, or
// refused for good (into rejected).
func (s *Sink) deliver(ctx context.Context, items []item, rejected map[int]string) error {
	wait := s.cfg.RetryWait
	for attempt := 0; len(items) > 0; attempt++ {
		results, err := s.post(ctx, items)
		if errors.Is(err, errTooLarge) {
			if len(items) == 1 {
				if items[0].idx < 0 {
					return exporters.Fatal(fmt.Errorf("elasticsearch: the checkpoint document is too large for the cluster: %w", err))
				}
				rejected[items[0].idx] = err.Error()
				return nil
			}
			half := len(items) / 2
			if err := s.deliver(ctx, items[:half], rejected); err != nil {
				return err
			}
			return s.deliver(ctx, items[half:], rejected)
		}
		if err != nil {
			return err
		}
		var retry []item
		throttled := false
		var last string
		for i, res := range results {
			it := items[i]
			reason := fmt.Sprintf("elasticsearch: document %s: %d %s: %s", it.id, res.Status, res.Error.Type, res.Error.Reason)
			switch {
			case res.Status == http.StatusOK || res.Status == http.StatusCreated:
			case res.Status == http.StatusConflict && res.Error.Type == "version_conflict_engine_exception":
				// Created before (a redelivery): exactly one document per leaf.
			case res.Status == http.StatusTooManyRequests || res.Status >= 500:
				retry = append(retry, it)
				throttled = throttled || res.Status == http.StatusTooManyRequests
				last = reason
			case res.Status == http.StatusUnauthorized || res.Status == http.StatusForbidden ||
				res.Status == http.StatusNotFound || res.Error.Type == "index_not_found_exception":
				return exporters.Fatal(errors.New(reason))
			case it.idx < 0:
				return exporters.Fatal(fmt.Errorf("the checkpoint document was refused: %s", reason))
			default:
				rejected[it.idx] = strings.TrimPrefix(reason, "elasticsearch: ")
			}
		}
		if len(retry) == 0 {
			return nil
		}
		if attempt >= s.cfg.ItemRetries {
			err := fmt.Errorf("%d item(s) still failing after %d resends, last: %s", len(retry), attempt, last)
			if throttled {
				return exporters.Throttle(s.cfg.ThrottleWait, err)
			}
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
		items = retry
	}
	return nil
}

var errTooLarge = errors.New("elasticsearch: request entity too large")

// esError is Elasticsearch's error object (item-level or whole-request).
type esError struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

type itemResult struct {
	ID     string  `json:"_id"`
	Status int     `json:"status"`
	Error  esError `json:"error"`
}

func (s *Sink) post(ctx context.Context, items []item) ([]itemResult, error) {
	var buf bytes.Buffer
	// Compressed like Beats' Elasticsearch output: Elasticsearch
	// decompresses request bodies sent with Content-Encoding: gzip.
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	for _, it := range items {
		_, _ = zw.Write(it.body)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.bulk, &buf)
	if err != nil {
		return nil, exporters.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Accept", "application/json")
	if s.cfg.APIKey != "" {
		req.Header.Set("Authorization", "ApiKey "+s.cfg.APIKey)
	} else {
		req.SetBasicAuth(s.cfg.Username, s.cfg.Password)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: %w", err) // transient
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("elasticsearch: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, s.classify(resp, raw)
	}
	var rep struct {
		Items []map[string]itemResult `json:"items"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, fmt.Errorf("elasticsearch: not a _bulk answer: %w", err)
	}
	if len(rep.Items) != len(items) {
		return nil, fmt.Errorf("elasticsearch: the answer has %d items for %d actions", len(rep.Items), len(items))
	}
	out := make([]itemResult, len(items))
	for i, m := range rep.Items {
		for _, r := range m {
			out[i] = r
		}
		if out[i].ID != "" && out[i].ID != items[i].id {
			return nil, fmt.Errorf("elasticsearch: answer item %d is for %q, not %q", i, out[i].ID, items[i].id)
		}
	}
	return out, nil
}

// classify maps a whole-request error answer to the exporters' classes.
func (s *Sink) classify(resp *http.Response, raw []byte) error {
	var body struct {
		Error json.RawMessage `json:"error"`
	}
	_ = json.Unmarshal(raw, &body)
	var e esError
	if json.Unmarshal(body.Error, &e) != nil || e.Type == "" {
		e.Reason = strings.TrimSpace(string(raw))
		if len(e.Reason) > 300 {
			e.Reason = e.Reason[:300]
		}
	}
	desc := fmt.Errorf("elasticsearch: HTTP %d %s: %s", resp.StatusCode, e.Type, e.Reason)
	st := resp.StatusCode
	switch {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return exporters.Fatal(desc)
	case st == http.StatusTooManyRequests:
		return exporters.Throttle(retryAfter(resp, s.cfg.ThrottleWait), desc)
	case st == http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w: %v", errTooLarge, desc)
	case st >= 500:
		if resp.Header.Get("Retry-After") != "" {
			return exporters.Throttle(retryAfter(resp, s.cfg.ThrottleWait), desc)
		}
		return desc // transient
	default:
		return exporters.Fatal(desc)
	}
}

// retryAfter reads Retry-After (seconds or an HTTP date), else def.
func retryAfter(resp *http.Response, def time.Duration) time.Duration {
	v := resp.Header.Get("Retry-After")
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return def
}

// Close releases idle connections.
func (s *Sink) Close(context.Context) error {
	s.cfg.Client.CloseIdleConnections()
	return nil
}
