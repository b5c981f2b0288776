// Package filesink is the exporters' file sink: rotated NDJSON files,
// zstd-compressed, each closed with the signed checkpoint that covers its
// last event. It is the path for data lakes and for whoever ships files
// onward (a file is complete and verifiable on its own once closed).
package filesink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/proofline/proofline/exporters"
)

// Config configures a file sink.
type Config struct {
	// Dir receives the files (created 0700).
	Dir string
	// Prefix starts every file name (default "proofline").
	Prefix string
	// MaxBytes rotates a file once this much uncompressed NDJSON went into
	// it (default 64 MiB); MaxAge once it has been open this long (default 1h).
	MaxBytes int64
	MaxAge   time.Duration
	// RetainAge deletes closed files older than this; RetainBytes deletes the
	// oldest closed files while all of them together are larger. Zero keeps
	// everything.
	RetainAge   time.Duration
	RetainBytes int64
	// Encode encodes an event as one line (default: exporters.EncodeNative);
	// EncodeAnchor a checkpoint (default: exporters.EncodeNativeAnchor).
	Encode       func(exporters.Event) ([]byte, error)
	EncodeAnchor func(*exporters.Anchor) ([]byte, error)
	// Now is the clock (tests).
	Now func() time.Time
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("file sink: dir is required"))
	}
	if c.MaxBytes < 0 || c.MaxAge < 0 || c.RetainAge < 0 || c.RetainBytes < 0 {
		errs = append(errs, errors.New("file sink: sizes and ages must not be negative"))
	}
	if strings.ContainsAny(c.Prefix, "/\\") {
		errs = append(errs, fmt.Errorf("file sink: prefix %q must not contain a path separator", c.Prefix))
	}
	return errors.Join(errs...)
}

const (
	openSuffix   = ".ndjson.zst.open"
	closedSuffix = ".ndjson.zst"
)

// Sink writes rotated files. Each Send is written as one zstd frame and
// fsynced before Send returns, so an acknowledged batch survives a crash;
// concatenated zstd frames are one valid zstd stream, readable by `zstd -d`
// or any zstd reader.
type Sink struct {
	cfg    Config
	enc    *zstd.Encoder
	f      *os.File
	name   string
	opened time.Time
	raw    int64 // uncompressed bytes in the open file
	anchor *exporters.Anchor
	last   uint64 // leaf index of the last event in the open file
	events int

	// appendLine encodes an event onto a buffer; buf and frame are kept
	// from one Send to the next (growing them for every batch cost a
	// quarter of the sink's CPU), unless a batch made them larger than
	// keepBuffer.
	appendLine func([]byte, exporters.Event) ([]byte, error)
	buf, frame []byte
}

// keepBuffer bounds the buffers a sink keeps between batches.
const keepBuffer = 8 << 20

// New opens the sink. A file left open by a crash is recovered first: its
// complete frames are kept and it is closed (without a checkpoint line,
// since the anchor that covered it is not known to this process: the
// events it holds carry their tree size, and the next file's checkpoint
// covers them too).
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "proofline"
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 64 << 20
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = time.Hour
	}
	appendLine := func(b []byte, e exporters.Event) ([]byte, error) { return exporters.AppendNative(b, e), nil }
	if cfg.Encode == nil {
		cfg.Encode = exporters.EncodeNative
	} else {
		appendLine = func(b []byte, e exporters.Event) ([]byte, error) {
			line, err := cfg.Encode(e)
			return append(b, line...), err
		}
	}
	if cfg.EncodeAnchor == nil {
		cfg.EncodeAnchor = exporters.EncodeNativeAnchor
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, enc: enc, appendLine: appendLine}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

// recover closes files a crashed process left open, keeping every complete
// line they hold.
func (s *Sink) recover() error {
	open, err := filepath.Glob(filepath.Join(s.cfg.Dir, s.cfg.Prefix+"-*"+openSuffix))
	if err != nil {
		return err
	}
	for _, p := range open {
		lines, err := readLines(p)
		if err != nil && len(lines) == 0 {
			return fmt.Errorf("file sink: recovering %s: %w", p, err)
		}
		frame := s.enc.EncodeAll(bytes.Join(lines, nil), nil)
		final := strings.TrimSuffix(p, openSuffix) + closedSuffix
		if err := writeFileSync(final, frame); err != nil {
			return fmt.Errorf("file sink: recovering %s: %w", p, err)
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return exporters.SyncDir(s.cfg.Dir)
}

// readLines decodes a possibly torn zstd file and returns its complete
// lines (each with its newline).
func readLines(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec, err := zstd.NewReader(f)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	var out [][]byte
	r := bufio.NewReader(dec)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, line)
	}
}

// Send appends the batch to the open file (opening one if needed) as one
// zstd frame and fsyncs it; then rotates if the file is full or old.
func (s *Sink) Send(_ context.Context, b exporters.Batch) error {
	buf := s.buf[:0]
	rejected := map[int]string{}
	for i, e := range b.Events {
		n := len(buf)
		var err error
		if buf, err = s.appendLine(buf, e); err != nil {
			buf = buf[:n]
			rejected[i] = "encode: " + err.Error()
			continue
		}
		buf = append(buf, '\n')
	}
	defer func() {
		if cap(buf) <= keepBuffer {
			s.buf = buf
		}
		if cap(s.frame) > keepBuffer {
			s.frame = nil
		}
	}()
	if b.Anchor != nil {
		s.anchor = b.Anchor
	}
	if len(b.Events) > 0 {
		if s.f == nil {
			if err := s.open(b.Events[0].Evidence.LeafIndex); err != nil {
				return err
			}
		}
		s.frame = s.enc.EncodeAll(buf, s.frame[:0])
		if _, err := s.f.Write(s.frame); err != nil {
			return fmt.Errorf("file sink: write %s: %w", s.name, err)
		}
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("file sink: fsync %s: %w", s.name, err)
		}
		s.raw += int64(len(buf))
		s.events += len(b.Events)
		s.last = b.Events[len(b.Events)-1].Evidence.LeafIndex
	}
	if s.f != nil && (s.raw >= s.cfg.MaxBytes || s.cfg.Now().Sub(s.opened) >= s.cfg.MaxAge) {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if len(rejected) > 0 {
		return &exporters.RejectedError{Reasons: rejected}
	}
	return nil
}

func (s *Sink) open(first uint64) error {
	s.name = filepath.Join(s.cfg.Dir, fmt.Sprintf("%s-%020d%s", s.cfg.Prefix, first, openSuffix))
	f, err := os.OpenFile(s.name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	if err := exporters.SyncDir(s.cfg.Dir); err != nil {
		f.Close()
		return err
	}
	s.f, s.opened, s.raw, s.events = f, s.cfg.Now(), 0, 0
	return nil
}

// rotate closes the open file with the checkpoint that covers its last
// event, and applies retention.
func (s *Sink) rotate() error {
	if s.anchor != nil && s.anchor.TreeSize > s.last {
		line, err := s.cfg.EncodeAnchor(s.anchor)
		if err != nil {
			return err
		}
		if _, err := s.f.Write(s.enc.EncodeAll(append(line, '\n'), nil)); err != nil {
			return fmt.Errorf("file sink: write %s: %w", s.name, err)
		}
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("file sink: fsync %s: %w", s.name, err)
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	final := strings.TrimSuffix(s.name, openSuffix) + closedSuffix
	if err := os.Rename(s.name, final); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	s.f = nil
	if err := exporters.SyncDir(s.cfg.Dir); err != nil {
		return err
	}
	return s.retain()
}

// retain deletes closed files past the retention age or size, oldest first.
func (s *Sink) retain() error {
	if s.cfg.RetainAge == 0 && s.cfg.RetainBytes == 0 {
		return nil
	}
	paths, err := filepath.Glob(filepath.Join(s.cfg.Dir, s.cfg.Prefix+"-*"+closedSuffix))
	if err != nil {
		return err
	}
	slices.Sort(paths) // names carry the zero-padded first leaf: oldest first
	type file struct {
		path string
		size int64
		mod  time.Time
	}
	var files []file
	var total int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		files = append(files, file{p, fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	now := s.cfg.Now()
	for _, f := range files {
		tooOld := s.cfg.RetainAge > 0 && now.Sub(f.mod) > s.cfg.RetainAge
		tooBig := s.cfg.RetainBytes > 0 && total > s.cfg.RetainBytes
		if !tooOld && !tooBig {
			break
		}
		if err := os.Remove(f.path); err != nil {
			return fmt.Errorf("file sink: retention: %w", err)
		}
		total -= f.size
	}
	return nil
}

// Close closes the open file (with its checkpoint) so it is complete.
func (s *Sink) Close(context.Context) error {
	defer s.enc.Close()
	if s.f == nil {
		return nil
	}
	return s.rotate()
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
