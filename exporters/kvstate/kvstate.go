// Package kvstate keeps the exporters' state in a JetStream key-value
// bucket instead of a local directory, so that an exporter can move hosts
// (or a standby take over) without losing its place, and so that only one
// runner at a time delivers to a sink: each sink's cursor lives in one key
// together with a lease on the sink, and every cursor write is a
// compare-and-set on that key's revision. A runner that lost the lease
// (it stalled past the lease, and another took the sink over) can
// therefore never move the new holder's cursor.
//
// Keys (sink names are letters, digits, '-' and '_', valid key tokens):
//
//	<sink>.cursor        {"cursor":…, "holder":…, "lease_until":…}
//	<sink>.status        the Status `proofline export status` shows
//	<sink>.replay        a pending replay request
//	<sink>.dl.<leaf>     one dead letter per refused leaf
//	trusted              the newest checkpoint the runners proved consistent
package kvstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/exporters"
)

// DefaultBucket is the bucket's name unless configured.
const DefaultBucket = "proofline_exporters"

// Config configures a State.
type Config struct {
	// Bucket is the key-value bucket (created if missing).
	Bucket string
	// Replicas of the bucket on a cluster (default 1).
	Replicas int
	// Lease is how long a runner holds a sink without renewing it
	// (default 15s): after a runner dies, another takes the sink over
	// within this long. It is renewed every Lease/3.
	Lease time.Duration
	// Holder names this runner in the lease (default: host, pid and a
	// random suffix).
	Holder string
	// Existing only opens a bucket that exists (readers such as `export
	// status` must not create one on a mistyped name).
	Existing bool
}

// Validate checks c; zero values take defaults.
func (c Config) Validate() error {
	var errs []error
	if c.Lease < 0 || (c.Lease > 0 && c.Lease < 100*time.Millisecond) {
		errs = append(errs, fmt.Errorf("Lease: %v, want at least 100ms", c.Lease))
	}
	if c.Replicas < 0 {
		errs = append(errs, fmt.Errorf("Replicas: %d is negative", c.Replicas))
	}
	return errors.Join(errs...)
}

// State is exporters.State in a JetStream key-value bucket.
type State struct {
	kv     jetstream.KeyValue
	lease  time.Duration
	holder string

	mu   sync.Mutex
	held map[string]*hold // sink → the hold this runner has
}

type hold struct {
	rev    uint64 // revision of <sink>.cursor as last written by us
	cursor exporters.Cursor
	lost   context.CancelCauseFunc
}

// cursorValue is the value of <sink>.cursor.
type cursorValue struct {
	Cursor     exporters.Cursor `json:"cursor"`
	Holder     string           `json:"holder,omitempty"`
	LeaseUntil time.Time        `json:"lease_until"`
}

// Open opens the bucket, creating it if missing.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*State, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Lease == 0 {
		cfg.Lease = 15 * time.Second
	}
	if cfg.Holder == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.Holder = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	// An existing bucket is used as it is: a reader (export status) must
	// not change the replicas an operator chose.
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) && !cfg.Existing {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "proofline exporters: cursors with their leases, statuses, dead letters, replay requests",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // made meanwhile by another runner
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("exporters state bucket %s: %w", cfg.Bucket, err)
	}
	return &State{kv: kv, lease: cfg.Lease, holder: cfg.Holder, held: map[string]*hold{}}, nil
}

// Holder is the name this runner holds sinks under.
func (s *State) Holder() string { return s.holder }

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// readCursor returns the value of <sink>.cursor and its revision (0 when
// the key does not exist).
func (s *State) readCursor(ctx context.Context, sink string) (cursorValue, uint64, error) {
	var v cursorValue
	e, err := s.kv.Get(ctx, sink+".cursor")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, 0, nil
	}
	if err != nil {
		return v, 0, err
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, 0, fmt.Errorf("cursor of sink %s: %w", sink, err)
	}
	return v, e.Revision(), nil
}

// write sets <sink>.cursor to v if its revision is still rev.
func (s *State) write(ctx context.Context, sink string, v cursorValue, rev uint64) (uint64, error) {
	b, _ := json.Marshal(v)
	if rev == 0 {
		return s.kv.Create(ctx, sink+".cursor", b)
	}
	return s.kv.Update(ctx, sink+".cursor", b, rev)
}

// Hold takes the sink's lease, waiting while another runner holds it, and
// renews it until release or ctx ends. The returned context ends when the
// lease is lost.
func (s *State) Hold(ctx context.Context, sink string) (context.Context, func(), error) {
	for {
		v, rev, err := s.readCursor(ctx, sink)
		if err == nil && (rev == 0 || v.Holder == "" || v.Holder == s.holder || time.Now().After(v.LeaseUntil)) {
			v.Holder, v.LeaseUntil = s.holder, time.Now().Add(s.lease)
			var nrev uint64
			if nrev, err = s.write(ctx, sink, v, rev); err == nil {
				return s.take(ctx, sink, v.Cursor, nrev)
			}
		}
		// Held by another runner, or it changed meanwhile: try again.
		wait := s.lease / 3
		if err == nil && v.Holder != s.holder {
			wait = min(wait, max(time.Until(v.LeaseUntil), 50*time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (s *State) take(ctx context.Context, sink string, c exporters.Cursor, rev uint64) (context.Context, func(), error) {
	hctx, lost := context.WithCancelCause(ctx)
	h := &hold{rev: rev, cursor: c, lost: lost}
	s.mu.Lock()
	s.held[sink] = h
	s.mu.Unlock()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-hctx.Done():
				return
			case <-t.C:
			}
			if err := s.renew(sink, h); err != nil {
				lost(fmt.Errorf("%w: %v", exporters.ErrLeaseLost, err))
				return
			}
		}
	}()
	release := func() {
		close(stop)
		<-done
		s.mu.Lock()
		if s.held[sink] == h {
			delete(s.held, sink)
		}
		s.mu.Unlock()
		// Give the sink up at once, so a standby need not wait for the
		// lease to run out (only if it is still ours).
		ctx, cancel := opCtx()
		defer cancel()
		s.mu.Lock()
		v := cursorValue{Cursor: h.cursor}
		rev := h.rev
		s.mu.Unlock()
		_, _ = s.write(ctx, sink, v, rev)
		lost(context.Canceled)
	}
	return hctx, release, nil
}

// renew extends the lease, keeping the cursor.
func (s *State) renew(sink string, h *hold) error {
	ctx, cancel := opCtx()
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := cursorValue{Cursor: h.cursor, Holder: s.holder, LeaseUntil: time.Now().Add(s.lease)}
	rev, err := s.write(ctx, sink, v, h.rev)
	if err != nil {
		return err
	}
	h.rev = rev
	return nil
}

// LoadCursor returns the sink's cursor (zero for a new sink).
func (s *State) LoadCursor(sink string) (exporters.Cursor, error) {
	s.mu.Lock()
	h := s.held[sink]
	s.mu.Unlock()
	if h != nil {
		return h.cursor, nil
	}
	ctx, cancel := opCtx()
	defer cancel()
	v, _, err := s.readCursor(ctx, sink)
	return v.Cursor, err
}

// SaveCursor moves the cursor, renewing the lease; it fails with
// exporters.ErrLeaseLost when this runner does not hold the sink (any
// more). A NATS error (a leader election, a reconnect) is retried for up
// to half the lease, so a blip does not stop the exporter; a write that
// landed although its answer was lost shows as a changed revision, which
// the runner handles as a lost lease (it holds the sink again, under its
// own name at once, and reads the cursor back).
func (s *State) SaveCursor(sink string, c exporters.Cursor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[sink]
	if h == nil {
		return fmt.Errorf("%w: sink %s is not held", exporters.ErrLeaseLost, sink)
	}
	deadline := time.Now().Add(s.lease / 2)
	for {
		ctx, cancel := opCtx()
		v := cursorValue{Cursor: c, Holder: s.holder, LeaseUntil: time.Now().Add(s.lease)}
		rev, err := s.write(ctx, sink, v, h.rev)
		cancel()
		switch {
		case err == nil:
			h.rev, h.cursor = rev, c
			return nil
		case errors.Is(err, jetstream.ErrKeyExists):
			h.lost(exporters.ErrLeaseLost)
			return fmt.Errorf("%w: %v", exporters.ErrLeaseLost, err)
		case time.Now().After(deadline):
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Sinks lists the sinks that have a cursor in the bucket.
func (s *State) Sinks() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys, err := s.keys(ctx, "*.cursor")
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		keys[i] = strings.TrimSuffix(k, ".cursor")
	}
	return keys, nil
}

// keys lists the bucket's keys matching filter, sorted.
func (s *State) keys(ctx context.Context, filter string) ([]string, error) {
	kl, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range kl.Keys() {
		keys = append(keys, k)
	}
	// The channel closes once every key is read; Stop then only says the
	// lister's subscription is gone already.
	_ = kl.Stop()
	sort.Strings(keys)
	return keys, nil
}

// LoadStatus reads a sink's last status.
func (s *State) LoadStatus(sink string) (exporters.Status, error) {
	var st exporters.Status
	ctx, cancel := opCtx()
	defer cancel()
	e, err := s.kv.Get(ctx, sink+".status")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(e.Value(), &st)
}

// SaveStatus writes the sink's status for readers.
func (s *State) SaveStatus(st exporters.Status) error {
	ctx, cancel := opCtx()
	defer cancel()
	b, _ := json.Marshal(st)
	_, err := s.kv.Put(ctx, st.Sink+".status", b)
	return err
}

// AppendDeadLetters stores each dead letter under its leaf; JetStream has
// them when it returns.
func (s *State) AppendDeadLetters(sink string, dls []exporters.DeadLetter) error {
	ctx, cancel := opCtx()
	defer cancel()
	for _, dl := range dls {
		b, _ := json.Marshal(dl)
		if _, err := s.kv.Put(ctx, fmt.Sprintf("%s.dl.%020d", sink, dl.LeafIndex), b); err != nil {
			return err
		}
	}
	return nil
}

// DeadLetters returns a sink's dead letters in leaf order.
func (s *State) DeadLetters(sink string) ([]exporters.DeadLetter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	keys, err := s.keys(ctx, sink+".dl.*")
	if err != nil {
		return nil, err
	}
	var out []exporters.DeadLetter
	for _, k := range keys {
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var dl exporters.DeadLetter
		if err := json.Unmarshal(e.Value(), &dl); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out = append(out, dl)
	}
	return out, nil
}

// RequestReplay asks the sink's runner, wherever it runs, to move its
// cursor back to from.
func (s *State) RequestReplay(sink string, from uint64) error {
	ctx, cancel := opCtx()
	defer cancel()
	b, _ := json.Marshal(struct {
		From uint64 `json:"from"`
	}{from})
	_, err := s.kv.Put(ctx, sink+".replay", b)
	return err
}

// TakeReplay returns a pending replay request and removes it.
func (s *State) TakeReplay(sink string) (uint64, bool, error) {
	ctx, cancel := opCtx()
	defer cancel()
	e, err := s.kv.Get(ctx, sink+".replay")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var r struct {
		From uint64 `json:"from"`
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return 0, false, fmt.Errorf("replay request of sink %s: %w", sink, err)
	}
	// Removed only if it is still the request read, so one made meanwhile
	// is not lost.
	if err := s.kv.Delete(ctx, sink+".replay", jetstream.LastRevision(e.Revision())); err != nil {
		return 0, false, err
	}
	return r.From, true, nil
}

// SaveTrusted records the newest checkpoint proven consistent.
func (s *State) SaveTrusted(note []byte) error {
	ctx, cancel := opCtx()
	defer cancel()
	_, err := s.kv.Put(ctx, "trusted", note)
	return err
}

// LoadTrusted returns the checkpoint SaveTrusted wrote, or nil.
func (s *State) LoadTrusted() ([]byte, error) {
	ctx, cancel := opCtx()
	defer cancel()
	e, err := s.kv.Get(ctx, "trusted")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

var _ exporters.State = (*State)(nil)
