// Package outbox hands call records from a producer that must never wait
// (the MCP hook, inside a tool call) to JetStream. Records go through a
// bounded in-memory queue; while JetStream cannot be reached they are
// appended to a spool file, bounded in size, and drained in order once it
// can. Every record keeps its record id as the JetStream message id, and
// the log deduplicates by record id forever, so a record published twice —
// drained again after a crash mid-drain, say — is still one leaf.
//
// This is the transactional-outbox pattern without the database: the
// spool is the outbox, the drain is the relay.
//
// A spool belongs to one process, which holds an exclusive lock on it (see
// spoollock.go). With Config.SpoolDir every process gets a spool of its own
// in a shared directory and adopts the spools that processes which have
// ended left there: an MCP host that starts one stdio server per session
// loses no record, whichever of its servers ends first.
package outbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/proofline/proofline/ingest/publish"
)

// Publisher stores messages in JetStream and returns when they are
// acknowledged; *publish.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, msgs []publish.Message) ([]publish.PubResult, error)
	// Connected is false while the connection is known to be down:
	// records then go to the spool at once instead of waiting out a
	// publish that cannot succeed.
	Connected() bool
}

// ErrFull means the queue and the spool are both full: the record was
// dropped. Callers that must not lose records check Full before the call
// they record (fail closed).
var ErrFull = errors.New("outbox full: queue and spool at capacity")

// ErrClosed is returned by Enqueue after Close.
var ErrClosed = errors.New("outbox closed")

// Config shapes an Outbox.
type Config struct {
	Publisher Publisher
	// SpoolDir is a directory of spools, one per process: Open creates
	// spool-<pid>-<random> in it (and the directory if need be), and
	// adopts the spools that ended processes left there, draining and then
	// removing them; a spool this process emptied is removed at Close.
	// Use it whenever more than one process may run with the same
	// configuration: an MCP host starts one stdio server per session.
	SpoolDir string
	// SpoolPath is one fixed spool file instead of SpoolDir, for a
	// process that runs alone: while one process has it open, Open in
	// another fails with a *SpoolLockedError naming the holder. Its
	// directory is created.
	SpoolPath string
	// AdoptInterval is how often SpoolDir is scanned for the spools of
	// ended processes (default 10 s); Open scans it once.
	AdoptInterval time.Duration
	// SpoolMaxBytes bounds the spool (default 64 MiB).
	SpoolMaxBytes int64
	// QueueSize bounds the in-memory queue (default 4096 records).
	QueueSize int
	// BatchSize is how many records one publish carries (default 256).
	BatchSize int
	// PublishTimeout bounds one publish (default 2 s): past it, JetStream
	// is taken to be unreachable and the batch is spooled.
	PublishTimeout time.Duration
	// RetryInterval is how often a non-empty spool is drained (default 1 s).
	RetryInterval time.Duration
	Logger        *slog.Logger
	// MeterProvider receives the outbox's metrics (see Stats); nil uses
	// the global one, a no-op unless an OpenTelemetry SDK is installed.
	MeterProvider metric.MeterProvider
}

// spoolPrefix starts the name of every spool in a SpoolDir.
const spoolPrefix = "spool-"

// Validate reports a configuration Open cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.Publisher == nil {
		errs = append(errs, errors.New("outbox: a Publisher is required"))
	}
	switch {
	case c.SpoolDir == "" && c.SpoolPath == "":
		errs = append(errs, errors.New("outbox: SpoolDir (or SpoolPath) is required"))
	case c.SpoolDir != "" && c.SpoolPath != "":
		errs = append(errs, errors.New("outbox: SpoolDir and SpoolPath are exclusive"))
	}
	if c.SpoolMaxBytes < 0 || c.QueueSize < 0 || c.BatchSize < 0 || c.PublishTimeout < 0 || c.RetryInterval < 0 || c.AdoptInterval < 0 {
		errs = append(errs, errors.New("outbox: sizes and intervals cannot be negative"))
	}
	return errors.Join(errs...)
}

// Stats are the outbox's counters, for metrics and health checks.
type Stats struct {
	// Enqueued counts records accepted by Enqueue.
	Enqueued uint64 `json:"enqueued"`
	// Published counts records JetStream acknowledged.
	Published uint64 `json:"published"`
	// Spooled counts records written to the spool.
	Spooled uint64 `json:"spooled"`
	// Dropped counts records refused with ErrFull.
	Dropped uint64 `json:"dropped"`
	// SpoolBytes is the spool's current size, pending records included.
	SpoolBytes int64 `json:"spool_bytes"`
	// AdoptedBytes is what remains to publish of the spools adopted from
	// ended processes.
	AdoptedBytes int64 `json:"adopted_bytes"`
	// Queued is the number of records waiting in memory.
	Queued int `json:"queued"`
}

// Outbox is a running outbox; safe for concurrent use.
type Outbox struct {
	cfg   Config
	log   *slog.Logger
	queue chan publish.Message

	// mu guards the spool: the file, its size and how much of it is
	// already published (drained).
	mu      sync.Mutex
	spool   *os.File
	size    int64
	drained int64

	spoolPath string
	lock      *os.File // held while open: the spool is this process's
	holder    Holder

	// adoptMu guards adopted, the spools of ended processes this one
	// drains.
	adoptMu      sync.Mutex
	adopted      []*adoptedSpool
	adoptedBytes atomic.Int64

	closeMu  sync.RWMutex
	isClosed bool

	enqueued, published, spooled, dropped atomic.Uint64
	spooling                              atomic.Bool // for logging transitions only
	full                                  atomic.Bool

	stop chan struct{}
	done chan struct{}
}

// adoptedSpool is a spool an ended process left in SpoolDir, locked by
// this one until it is drained and removed.
type adoptedSpool struct {
	path          string
	f, lock       *os.File
	size, drained int64
}

// Open takes (or creates) the spool and starts the relay. Records spooled
// by an earlier run, or left in SpoolDir by ended processes, are drained
// first. Open fails with a *SpoolLockedError (ErrSpoolLocked) when another
// process holds SpoolPath.
func Open(cfg Config) (*Outbox, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SpoolMaxBytes <= 0 {
		cfg.SpoolMaxBytes = 64 << 20
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 4096
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 2 * time.Second
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.AdoptInterval <= 0 {
		cfg.AdoptInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	me := thisProcess(time.Now())
	path := cfg.SpoolPath
	if cfg.SpoolDir != "" {
		var suffix [4]byte
		_, _ = rand.Read(suffix[:]) // never fails (crypto/rand)
		path = filepath.Join(cfg.SpoolDir, fmt.Sprintf("%s%d-%s", spoolPrefix, me.PID, hex.EncodeToString(suffix[:])))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("outbox spool dir: %w", err)
	}
	// The lock first, then the spool: a spool file in SpoolDir whose lock
	// is free is one no live process writes.
	lock, _, err := lockSpool(path, me)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("outbox spool: %w", err)
	}
	size, err := completeLines(f)
	if err != nil {
		_ = f.Close()
		_ = lock.Close()
		return nil, err
	}
	o := &Outbox{
		cfg: cfg, log: cfg.Logger, queue: make(chan publish.Message, cfg.QueueSize),
		spool: f, size: size, spoolPath: path, lock: lock, holder: me,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if size > 0 {
		o.log.Info("outbox: records spooled by an earlier run will be drained", "spool", path, "bytes", size)
	}
	mp := cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if err := o.registerMetrics(mp.Meter("github.com/proofline/proofline/ingest/outbox")); err != nil {
		_ = f.Close()
		_ = lock.Close()
		return nil, fmt.Errorf("outbox metrics: %w", err)
	}
	if cfg.SpoolDir != "" {
		o.adopt()
	}
	go o.run()
	return o, nil
}

// SpoolPath is the spool file this outbox owns.
func (o *Outbox) SpoolPath() string { return o.spoolPath }

// adopt takes over the spools in SpoolDir whose lock is free: their
// processes ended (the kernel released the lock) before draining them.
// A spool whose lock is held belongs to a live process and is left alone.
func (o *Outbox) adopt() {
	entries, err := os.ReadDir(o.cfg.SpoolDir)
	if err != nil {
		o.log.Warn("outbox: cannot scan the spool directory for spools of ended processes", "dir", o.cfg.SpoolDir, "err", err)
		return
	}
	o.adoptMu.Lock()
	defer o.adoptMu.Unlock()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, spoolPrefix) || strings.HasSuffix(name, ".lock") || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(o.cfg.SpoolDir, name)
		if path == o.spoolPath || slices.ContainsFunc(o.adopted, func(a *adoptedSpool) bool { return a.path == path }) {
			continue
		}
		lock, prev, err := lockSpool(path, o.holder)
		if errors.Is(err, ErrSpoolLocked) {
			continue // its process is alive
		}
		if err != nil {
			o.log.Warn("outbox: cannot lock a spool to adopt it", "spool", path, "err", err)
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			// Removed by its owner or another adopter since the scan.
			_ = os.Remove(path + ".lock")
			_ = lock.Close()
			continue
		}
		if err != nil {
			o.log.Warn("outbox: cannot open a spool to adopt it", "spool", path, "err", err)
			_ = lock.Close()
			continue
		}
		size, err := completeLines(f)
		if err != nil {
			o.log.Warn("outbox: cannot read a spool to adopt it", "spool", path, "err", err)
			_ = f.Close()
			_ = lock.Close()
			continue
		}
		a := &adoptedSpool{path: path, f: f, lock: lock, size: size}
		if size == 0 {
			a.remove()
			continue
		}
		o.log.Info("outbox: adopting the spool of a process that ended; its records will be drained",
			"spool", path, "bytes", size, "left_by", prev.String())
		o.adopted = append(o.adopted, a)
		o.adoptedBytes.Add(size)
	}
}

// remove deletes a drained spool: the lock file first, so that a spool
// file without one is always free to adopt (and, empty, to remove).
func (a *adoptedSpool) remove() {
	_ = os.Remove(a.path + ".lock")
	_ = os.Remove(a.path)
	_ = a.f.Close()
	_ = a.lock.Close()
}

// drainAdopted publishes the adopted spools, one after the other, and
// removes each once all of it is published. A failed publish leaves the
// rest for the next tick; a record published again after a crash
// mid-drain is still one leaf (its record id is the message id).
func (o *Outbox) drainAdopted() {
	o.adoptMu.Lock()
	defer o.adoptMu.Unlock()
	for len(o.adopted) > 0 {
		a := o.adopted[0]
		for a.drained < a.size {
			select {
			case <-o.stop:
				return
			default:
			}
			batch, n, err := o.readBatch(a.f, a.drained, a.size)
			if err != nil {
				o.log.Error("outbox: reading an adopted spool", "spool", a.path, "err", err)
				return
			}
			if len(batch) > 0 {
				if err := o.publish(batch); err != nil {
					return
				}
			}
			a.drained += n
			o.adoptedBytes.Add(-n)
		}
		o.log.Info("outbox: adopted spool drained", "spool", a.path)
		a.remove()
		o.adopted = o.adopted[1:]
	}
}

// registerMetrics exposes Stats as OpenTelemetry instruments, observed
// when the SDK collects: proofline.outbox.records{state} counts records
// published, spooled and dropped; proofline.outbox.spool.usage is the
// spool's pending bytes, proofline.outbox.spool.limit its bound, and
// proofline.outbox.spool.full is 1 while it refuses records.
func (o *Outbox) registerMetrics(m metric.Meter) error {
	records, err := m.Int64ObservableCounter("proofline.outbox.records", metric.WithUnit("{record}"),
		metric.WithDescription("Call records the outbox published, spooled or dropped."))
	if err != nil {
		return err
	}
	usage, err := m.Int64ObservableUpDownCounter("proofline.outbox.spool.usage", metric.WithUnit("By"),
		metric.WithDescription("Bytes of spooled records not yet published."))
	if err != nil {
		return err
	}
	limit, err := m.Int64ObservableUpDownCounter("proofline.outbox.spool.limit", metric.WithUnit("By"),
		metric.WithDescription("The spool's size bound."))
	if err != nil {
		return err
	}
	full, err := m.Int64ObservableGauge("proofline.outbox.spool.full",
		metric.WithDescription("1 while the spool is full and records are dropped."))
	if err != nil {
		return err
	}
	state := func(v string) metric.ObserveOption {
		return metric.WithAttributes(attribute.String("state", v))
	}
	_, err = m.RegisterCallback(func(_ context.Context, obs metric.Observer) error {
		st := o.Stats()
		obs.ObserveInt64(records, int64(st.Published), state("published"))
		obs.ObserveInt64(records, int64(st.Spooled), state("spooled"))
		obs.ObserveInt64(records, int64(st.Dropped), state("dropped"))
		obs.ObserveInt64(usage, st.SpoolBytes+st.AdoptedBytes)
		obs.ObserveInt64(limit, o.cfg.SpoolMaxBytes)
		var f int64
		if o.Full() {
			f = 1
		}
		obs.ObserveInt64(full, f)
		return nil
	}, records, usage, limit, full)
	return err
}

// completeLines cuts a torn last line (a crash mid-append) off the spool
// and returns the size that remains.
func completeLines(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("outbox spool: %w", err)
	}
	size := st.Size()
	if size == 0 {
		return 0, nil
	}
	// Scan back for the last newline; records are at most a few hundred
	// KiB, so a bounded read from the end suffices.
	const window = 1 << 20
	start := max(0, size-window)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("outbox spool: %w", err)
	}
	keep := start + int64(bytes.LastIndexByte(buf, '\n')+1)
	if keep != size {
		if err := f.Truncate(keep); err != nil {
			return 0, fmt.Errorf("outbox spool: %w", err)
		}
	}
	return keep, nil
}

// Enqueue hands a record over without waiting for JetStream or the disk
// beyond one buffered write: to the queue if there is room, else to the
// spool. It fails with ErrFull only when both are full.
func (o *Outbox) Enqueue(m publish.Message) error {
	// The read lock keeps Close from sweeping the queue between the check
	// and the send, which would strand this record in the queue.
	o.closeMu.RLock()
	defer o.closeMu.RUnlock()
	if o.isClosed {
		return ErrClosed
	}
	select {
	case o.queue <- m:
		o.enqueued.Add(1)
		return nil
	default:
	}
	if err := o.writeSpool([]publish.Message{m}, false); err != nil {
		if errors.Is(err, ErrFull) {
			o.dropped.Add(1)
		}
		return err
	}
	o.enqueued.Add(1)
	return nil
}

// Full reports whether the spool has refused records for lack of room
// and not drained since. A fail-closed producer refuses its calls while
// this holds.
func (o *Outbox) Full() bool { return o.full.Load() }

// Stats returns the counters.
func (o *Outbox) Stats() Stats {
	return Stats{
		Enqueued: o.enqueued.Load(), Published: o.published.Load(), Spooled: o.spooled.Load(),
		Dropped: o.dropped.Load(), SpoolBytes: o.pending(), AdoptedBytes: o.adoptedBytes.Load(), Queued: len(o.queue),
	}
}

// Close stops taking records, publishes or spools what is queued (until
// ctx ends), closes the spool and releases its lock. What is spooled is
// drained by the next Open of SpoolPath, or by any process using SpoolDir,
// which adopts it; an empty spool in SpoolDir is removed.
func (o *Outbox) Close(ctx context.Context) error {
	o.closeMu.Lock()
	if o.isClosed {
		o.closeMu.Unlock()
		return nil
	}
	o.isClosed = true
	o.closeMu.Unlock()
	close(o.stop)
	select {
	case <-o.done:
	case <-ctx.Done():
	}
	// Whatever the relay did not get to goes to the spool: nothing
	// enqueued is dropped by a shutdown.
	var rest []publish.Message
	for {
		select {
		case m := <-o.queue:
			rest = append(rest, m)
			continue
		default:
		}
		break
	}
	var errs []error
	if len(rest) > 0 {
		errs = append(errs, o.writeSpool(rest, true))
	}
	o.mu.Lock()
	// Emptied (all published): a per-process spool has no further use.
	remove := o.cfg.SpoolDir != "" && o.size == o.drained
	if remove {
		errs = append(errs, o.spool.Truncate(0))
	}
	errs = append(errs, o.spool.Sync(), o.spool.Close())
	if remove {
		// The lock file first: see adoptedSpool.remove.
		_ = os.Remove(o.spoolPath + ".lock")
		_ = os.Remove(o.spoolPath)
	}
	errs = append(errs, o.lock.Close())
	o.mu.Unlock()
	// Adopted spools not yet drained go back to the directory, for the
	// next process to adopt. The relay may still be draining one if ctx
	// ended first: adoptMu waits for its batch.
	o.adoptMu.Lock()
	for _, a := range o.adopted {
		_ = a.f.Close()
		_ = a.lock.Close()
	}
	o.adopted = nil
	o.adoptMu.Unlock()
	return errors.Join(errs...)
}

// run is the relay: it publishes queued records, spooling them while
// JetStream is unreachable, and drains the spool.
func (o *Outbox) run() {
	defer close(o.done)
	tick := time.NewTicker(o.cfg.RetryInterval)
	defer tick.Stop()
	var adoptC <-chan time.Time
	if o.cfg.SpoolDir != "" {
		adoptTick := time.NewTicker(o.cfg.AdoptInterval)
		defer adoptTick.Stop()
		adoptC = adoptTick.C
	}
	o.drainAdopted()
	o.drain()
	for {
		select {
		case <-o.stop:
			// Publish what is queued if JetStream is there; Close spools
			// the rest.
			o.flushQueue()
			return
		case m := <-o.queue:
			batch := o.collect(m)
			o.send(batch)
		case <-tick.C:
			o.drainAdopted()
			o.drain()
		case <-adoptC:
			o.adopt()
		}
	}
}

func (o *Outbox) collect(first publish.Message) []publish.Message {
	batch := []publish.Message{first}
	for len(batch) < o.cfg.BatchSize {
		select {
		case m := <-o.queue:
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}

// flushQueue empties the queue at Close: published while JetStream
// answers, spooled (without further attempts, which could each take
// PublishTimeout) from the first failure on.
func (o *Outbox) flushQueue() {
	down := o.pending() > 0
	for {
		select {
		case m := <-o.queue:
			batch := o.collect(m)
			if !down && o.publish(batch) == nil {
				continue
			}
			down = true
			if err := o.writeSpool(batch, true); err != nil {
				o.dropped.Add(uint64(len(batch)))
				o.log.Error("outbox: records dropped at close", "records", len(batch), "err", err)
			}
		default:
			return
		}
	}
}

// send publishes a batch, or spools it. While the spool holds records the
// batch goes behind them, so records reach JetStream in the order they
// were made.
func (o *Outbox) send(batch []publish.Message) {
	if o.pending() == 0 {
		if err := o.publish(batch); err == nil {
			return
		} else if !o.spooling.Swap(true) {
			o.log.Warn("outbox: JetStream unreachable; spooling records to disk", "err", err, "spool", o.spoolPath)
		}
	}
	if err := o.writeSpool(batch, false); err != nil {
		o.dropped.Add(uint64(len(batch)))
		o.log.Error("outbox: records dropped", "records", len(batch), "err", err)
	}
}

// errDisconnected: the publisher knows its connection is down.
var errDisconnected = errors.New("not connected to NATS")

// publish hands a batch to the publisher only while its connection is up.
// Otherwise the batch would wait out PublishTimeout in memory, and so
// would the records queued behind it — lost if the process died
// meanwhile; and the NATS client would keep the messages it was given and
// send them on reconnecting, ahead of records spooled before them. (Until
// the client notices an outage that can still happen: order in the stream
// is then not spool order; nothing is lost or stored twice.)
func (o *Outbox) publish(batch []publish.Message) error {
	if !o.cfg.Publisher.Connected() {
		return errDisconnected
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.cfg.PublishTimeout)
	defer cancel()
	if _, err := o.cfg.Publisher.Publish(ctx, batch); err != nil {
		return err
	}
	o.published.Add(uint64(len(batch)))
	return nil
}

func (o *Outbox) pending() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.size - o.drained
}

// writeSpool writes records behind the spool's end, refusing them all
// when they do not fit; sync makes them durable before it returns.
func (o *Outbox) writeSpool(batch []publish.Message, sync bool) error {
	var buf bytes.Buffer
	for _, m := range batch {
		if strings.ContainsAny(m.RecordID, " \n") || bytes.IndexByte(m.Data, '\n') >= 0 {
			// Canonical JSON never holds a raw newline; this is a bug
			// upstream, and the line format could not hold it.
			return fmt.Errorf("outbox: record %q cannot be spooled (newline in id or data)", m.RecordID)
		}
		buf.WriteString(m.RecordID)
		buf.WriteByte(' ')
		buf.Write(m.Data)
		buf.WriteByte('\n')
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.size+int64(buf.Len()) > o.cfg.SpoolMaxBytes {
		if !o.full.Swap(true) {
			o.log.Error("outbox: spool full; records are dropped until it drains", "spool_bytes", o.size, "max", o.cfg.SpoolMaxBytes)
		}
		return ErrFull
	}
	if _, err := o.spool.WriteAt(buf.Bytes(), o.size); err != nil {
		return fmt.Errorf("outbox spool: %w", err)
	}
	o.size += int64(buf.Len())
	o.spooled.Add(uint64(len(batch)))
	if sync {
		return o.spool.Sync()
	}
	return nil
}

// drain publishes the spool from where the last drain stopped, batch by
// batch, and empties the file once all of it is published. A failed
// publish leaves the rest for the next tick.
func (o *Outbox) drain() {
	for {
		o.mu.Lock()
		from, to := o.drained, o.size
		if from == to {
			if to > 0 {
				// All published: start the file over. Sync first so the
				// emptied spool never reappears with stale records.
				if err := o.spool.Truncate(0); err == nil {
					o.size, o.drained = 0, 0
					o.full.Store(false)
				}
				if o.spooling.Swap(false) {
					o.log.Info("outbox: spool drained; publishing directly again")
				}
			}
			o.mu.Unlock()
			return
		}
		// Before publishing a spooled record, make sure it is on disk: if
		// the process dies mid-drain the record is still there to retry.
		if err := o.spool.Sync(); err != nil {
			o.mu.Unlock()
			o.log.Error("outbox: spool sync", "err", err)
			return
		}
		o.mu.Unlock()

		batch, n, err := o.readBatch(o.spool, from, to)
		if err != nil {
			o.log.Error("outbox: reading spool", "err", err)
			return
		}
		if len(batch) > 0 {
			if err := o.publish(batch); err != nil {
				if !o.spooling.Swap(true) {
					o.log.Warn("outbox: JetStream unreachable; spooling records to disk", "err", err)
				}
				return
			}
		}
		o.mu.Lock()
		o.drained = from + n
		o.mu.Unlock()
	}
}

// readBatch reads up to BatchSize spooled records of f starting at
// offset from, and returns them with the bytes they took.
func (o *Outbox) readBatch(f *os.File, from, to int64) ([]publish.Message, int64, error) {
	r := bufio.NewReader(io.NewSectionReader(f, from, to-from))
	var batch []publish.Message
	var n int64
	for len(batch) < o.cfg.BatchSize {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		n += int64(len(line))
		id, data, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(" "))
		if !ok || len(id) == 0 {
			o.log.Error("outbox: skipping a malformed spool line", "offset", from+n-int64(len(line)))
			continue
		}
		batch = append(batch, publish.Message{RecordID: string(id), Data: bytes.Clone(data)})
	}
	return batch, n, nil
}
