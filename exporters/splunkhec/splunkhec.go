// Package splunkhec is the exporters' Splunk HTTP Event Collector sink.
//
// It follows Splunk's documented HEC contract: batches of concatenated
// event objects to /services/collector/event, gzip-compressed,
// `Authorization: Splunk <token>`; with indexer acknowledgement on, every
// request carries the channel GUID header and a batch counts as delivered
// only once /services/collector/ack answers true for its ackId. The HTTP
// status and HEC code table decides what is retried: 503 (codes 9, 18, 19,
// 20, 23) and 429 are retried, honouring Retry-After; 401/403 and a wrong
// index are configuration errors (the cursor stays, nothing is dropped);
// 400 code 6 names the one invalid event, which is dead-lettered while the
// rest of the batch is resent; other 400s are split until the refused
// events are isolated.
package splunkhec

import (
	"bytes"
	"context"
	"crypto/rand"
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
)

// Config configures the sink.
type Config struct {
	// URL is the HEC base URL, e.g. https://hec.example.com:8088.
	URL string
	// Token is the HEC token.
	Token string
	// Index, Source, Sourcetype and Host are the event metadata (empty:
	// the token's defaults). Checkpoints use Sourcetype + ":checkpoint".
	Index, Source, Sourcetype, Host string
	// Ack turns on indexer acknowledgement; AckTimeout bounds the wait for
	// one batch's ack (default 2m) before the batch is resent.
	Ack        bool
	AckTimeout time.Duration
	// AckPoll is the interval between ack polls (default 250ms).
	AckPoll time.Duration
	// Channel is the request channel GUID (default: a new random one).
	Channel string
	// Client is the HTTP client (its transport carries TLS settings).
	Client *http.Client
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("splunk_hec: url %q: want https://host:port", c.URL))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("splunk_hec: token is required (token_file)"))
	}
	if c.AckTimeout < 0 || c.AckPoll < 0 {
		errs = append(errs, errors.New("splunk_hec: ack timeouts must not be negative"))
	}
	return errors.Join(errs...)
}

// Sink sends batches to one HEC endpoint.
type Sink struct {
	cfg Config
	// zw is reused for every batch (Send is called by one goroutine at a
	// time): a new compressor per batch allocates and clears its window
	// each time.
	zw *gzip.Writer
}

// New makes a sink.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 2 * time.Minute
	}
	if cfg.AckPoll == 0 {
		cfg.AckPoll = 250 * time.Millisecond
	}
	if cfg.Channel == "" {
		cfg.Channel = newGUID()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &Sink{cfg: cfg}, nil
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// hecEvent is one event in HEC's event format.
type hecEvent struct {
	Time       float64        `json:"time,omitempty"`
	Host       string         `json:"host,omitempty"`
	Source     string         `json:"source,omitempty"`
	Sourcetype string         `json:"sourcetype,omitempty"`
	Index      string         `json:"index,omitempty"`
	Event      any            `json:"event"`
	Fields     map[string]any `json:"fields,omitempty"`
}

// item is one encoded event and where it came from (-1: the anchor).
type item struct {
	idx  int
	body []byte
}

func (s *Sink) encode(b exporters.Batch) ([]item, map[int]string) {
	var items []item
	rejected := map[int]string{}
	if b.Anchor != nil {
		a := b.Anchor
		body, _ := json.Marshal(hecEvent{
			Time: float64(time.Now().UnixMilli()) / 1000, Host: s.cfg.Host, Source: s.cfg.Source, Index: s.cfg.Index,
			Sourcetype: suffix(s.cfg.Sourcetype, ":checkpoint"),
			Event:      exporters.NativeAnchor{Type: exporters.TypeCheckpoint, Origin: a.Origin, TreeSize: a.TreeSize, RootHash: a.RootHash, Checkpoint: string(a.Note)},
			Fields:     map[string]any{"log_origin": a.Origin, "tree_size": a.TreeSize},
		})
		items = append(items, item{idx: -1, body: body})
	}
	for i, e := range b.Events {
		body, err := s.encodeEvent(e)
		if err != nil {
			rejected[i] = "encode: " + err.Error()
			continue
		}
		items = append(items, item{idx: i, body: body})
	}
	return items, rejected
}

// encodeEvent writes one HEC event by hand around the native encoding:
// json.Marshal would re-validate the leaf's canonical JSON on every event,
// which cost more than the rest of the sink together.
func (s *Sink) encodeEvent(e exporters.Event) ([]byte, error) {
	native, err := exporters.EncodeNative(e)
	if err != nil {
		return nil, err
	}
	ev := e.Evidence
	b := make([]byte, 0, len(native)+256)
	b = append(b, '{')
	if t := e.StartTime(); !t.IsZero() {
		b = append(b, `"time":`...)
		b = strconv.AppendFloat(b, float64(t.UnixMicro())/1e6, 'f', 6, 64)
		b = append(b, ',')
	}
	for _, kv := range [][2]string{{"host", s.cfg.Host}, {"source", s.cfg.Source}, {"sourcetype", s.cfg.Sourcetype}, {"index", s.cfg.Index}} {
		if kv[1] != "" {
			b = append(b, '"')
			b = append(b, kv[0]...)
			b = append(b, `":`...)
			b = appendString(b, kv[1])
			b = append(b, ',')
		}
	}
	b = append(b, `"event":`...)
	b = append(b, native...)
	b = append(b, `,"fields":{"log_origin":`...)
	b = appendString(b, ev.Origin)
	b = append(b, `,"leaf_index":`...)
	b = strconv.AppendUint(b, ev.LeafIndex, 10)
	b = append(b, `,"tree_size":`...)
	b = strconv.AppendUint(b, ev.TreeSize, 10)
	b = append(b, `,"record_id":`...)
	b = appendString(b, ev.RecordID)
	return append(b, "}}"...), nil
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

func suffix(s, sfx string) string {
	if s == "" {
		return ""
	}
	return s + sfx
}

// Send delivers b; see the package comment for how answers are classified.
func (s *Sink) Send(ctx context.Context, b exporters.Batch) error {
	items, rejected := s.encode(b)
	if err := s.sendItems(ctx, items, rejected); err != nil {
		return err
	}
	if len(rejected) > 0 {
		return &exporters.RejectedError{Reasons: rejected}
	}
	return nil
}

// sendItems delivers items, isolating the ones HEC refuses into rejected.
func (s *Sink) sendItems(ctx context.Context, items []item, rejected map[int]string) error {
	for len(items) > 0 {
		err := s.post(ctx, items)
		var bad *badRequest
		switch {
		case err == nil:
			return nil
		case errors.As(err, &bad) && bad.invalidEvent >= 0 && bad.invalidEvent < len(items):
			// Code 6 names the event: dead-letter it, resend the others.
			it := items[bad.invalidEvent]
			if it.idx < 0 {
				return fmt.Errorf("splunk_hec: the checkpoint event was refused: %w", err)
			}
			rejected[it.idx] = bad.Error()
			items = append(items[:bad.invalidEvent:bad.invalidEvent], items[bad.invalidEvent+1:]...)
		case errors.As(err, &bad) || errors.Is(err, errTooLarge):
			if len(items) == 1 {
				if items[0].idx < 0 {
					return fmt.Errorf("splunk_hec: the checkpoint event was refused: %w", err)
				}
				rejected[items[0].idx] = err.Error()
				return nil
			}
			half := len(items) / 2
			if err := s.sendItems(ctx, items[:half], rejected); err != nil {
				return err
			}
			items = items[half:]
		default:
			return err
		}
	}
	return nil
}

type badRequest struct {
	code         int
	text         string
	invalidEvent int
}

func (e *badRequest) Error() string {
	return fmt.Sprintf("HEC code %d: %s", e.code, e.text)
}

var errTooLarge = errors.New("HEC: request entity too large")

// hecReply is HEC's answer body.
type hecReply struct {
	Text         string `json:"text"`
	Code         int    `json:"code"`
	AckID        *int64 `json:"ackId"`
	InvalidEvent *int   `json:"invalid-event-number"`
}

func (s *Sink) post(ctx context.Context, items []item) error {
	var buf bytes.Buffer
	if s.zw == nil {
		// The fastest level, as the ECS sink: call records compress
		// well at any level, and at the default level gzip was the HEC
		// runner's largest cost (7% of the export bench's CPU, on the
		// cores the log and ingest share).
		s.zw, _ = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	} else {
		s.zw.Reset(&buf)
	}
	zw := s.zw
	for _, it := range items {
		zw.Write(it.body)
		zw.Write([]byte{'\n'})
	}
	if err := zw.Close(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL+"/services/collector/event", &buf)
	if err != nil {
		return exporters.Fatal(err)
	}
	req.Header.Set("Authorization", "Splunk "+s.cfg.Token)
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.Ack {
		req.Header.Set("X-Splunk-Request-Channel", s.cfg.Channel)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("splunk_hec: %w", err) // transient
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var rep hecReply
	_ = json.Unmarshal(raw, &rep)
	if err := classify(resp, rep, raw); err != nil {
		return err
	}
	if !s.cfg.Ack {
		return nil
	}
	if rep.AckID == nil {
		return exporters.Fatal(errors.New("splunk_hec: ack is on but HEC answered without an ackId: enable indexer acknowledgement on the token"))
	}
	return s.waitAck(ctx, *rep.AckID)
}

// classify maps HEC's status and code to the exporters' error classes
// (Splunk's "Troubleshoot HTTP Event Collector" status code table).
func classify(resp *http.Response, rep hecReply, raw []byte) error {
	st := resp.StatusCode
	if st == http.StatusOK && rep.Code == 0 {
		return nil
	}
	desc := fmt.Errorf("splunk_hec: HTTP %d code %d: %s", st, rep.Code, strings.TrimSpace(firstNonEmpty(rep.Text, string(raw))))
	retryAfter := time.Duration(0)
	if v, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && v > 0 {
		retryAfter = time.Duration(v) * time.Second
	}
	switch {
	case st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable:
		if retryAfter == 0 {
			retryAfter = time.Second
		}
		return exporters.Throttle(retryAfter, desc)
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return exporters.Fatal(desc)
	case st == http.StatusRequestEntityTooLarge:
		return errTooLarge
	case st == http.StatusBadRequest:
		switch rep.Code {
		case 7, 10, 11: // incorrect index, data channel missing or invalid
			return exporters.Fatal(desc)
		}
		inv := -1
		if rep.InvalidEvent != nil {
			inv = *rep.InvalidEvent
		}
		return &badRequest{code: rep.Code, text: firstNonEmpty(rep.Text, string(raw)), invalidEvent: inv}
	default:
		return desc // 5xx and anything unexpected: transient
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// waitAck polls the ack endpoint until HEC says the batch is indexed.
// A batch whose ack does not come within AckTimeout is resent (Splunk's
// guidance: an ack that never turns true means the data may be lost).
func (s *Sink) waitAck(ctx context.Context, id int64) error {
	deadline := time.Now().Add(s.cfg.AckTimeout)
	body, _ := json.Marshal(map[string][]int64{"acks": {id}})
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL+"/services/collector/ack?channel="+url.QueryEscape(s.cfg.Channel), bytes.NewReader(body))
		if err != nil {
			return exporters.Fatal(err)
		}
		req.Header.Set("Authorization", "Splunk "+s.cfg.Token)
		req.Header.Set("X-Splunk-Request-Channel", s.cfg.Channel)
		resp, err := s.cfg.Client.Do(req)
		if err != nil {
			return fmt.Errorf("splunk_hec: ack %d: %w", id, err)
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var rep hecReply
			_ = json.Unmarshal(raw, &rep)
			return fmt.Errorf("splunk_hec: ack %d: %w", id, classify(resp, rep, raw))
		}
		var acks struct {
			Acks map[string]bool `json:"acks"`
		}
		if err := json.Unmarshal(raw, &acks); err != nil {
			return fmt.Errorf("splunk_hec: ack %d: %w", id, err)
		}
		if acks.Acks[strconv.FormatInt(id, 10)] {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("splunk_hec: ack %d not confirmed within %s: resending the batch", id, s.cfg.AckTimeout)
		}
		t := time.NewTimer(s.cfg.AckPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close has nothing to release.
func (s *Sink) Close(context.Context) error { return nil }
