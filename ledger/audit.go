package ledger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/ledger/verify"
)

// ErrIntegrity means the log's own audit found stored entries or tiles
// that disagree with its signed checkpoint. Nothing the log serves can be
// trusted until an operator has looked: the log stops signing checkpoints
// and appending, and proofs are refused.
var ErrIntegrity = errors.New("log integrity")

// Audit defaults: see Config.
const (
	DefaultAuditInterval = time.Minute
	DefaultAuditEvery    = 100_000
	DefaultAuditRecheck  = 16
)

// selfAudit is the log auditing itself with the same code an outside
// auditor runs (ledger/verify), over the files it serves.
type selfAudit struct {
	mu      sync.Mutex // serialises checks; guards a
	a       *verify.Auditor
	failed  atomic.Pointer[error]
	trigger chan struct{}
	// sinceCheck counts entries appended since a check was last asked for.
	sinceCheck atomic.Uint64
	every      uint64
	passed     bool // a check has passed (under mu)
}

func newSelfAudit(dir string, v note.Verifier, recheck int, every uint64) *selfAudit {
	return &selfAudit{
		a:       verify.NewAuditor(client.FileFetcher{Root: dir}, v, recheck),
		trigger: make(chan struct{}, 1),
		every:   every,
	}
}

// err is the integrity failure found, nil while none was.
func (s *selfAudit) err() error {
	if p := s.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// appended counts n new entries and asks for a check every `every`.
func (s *selfAudit) appended(n int) {
	if s.every == 0 || s.sinceCheck.Add(uint64(n)) < s.every {
		return
	}
	s.sinceCheck.Store(0)
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// gatedSigner signs checkpoints only while the self-audit has found
// nothing: once the stored log disagrees with what was signed, a new
// checkpoint on top would vouch for the damage.
type gatedSigner struct {
	note.Signer
	audit *selfAudit
}

func (g gatedSigner) Sign(msg []byte) ([]byte, error) {
	if err := g.audit.err(); err != nil {
		return nil, fmt.Errorf("not signing a checkpoint: %w", err)
	}
	return g.Signer.Sign(msg)
}

// Audit re-derives the entries appended since the previous audit, plus
// the newest Config.AuditRecheck full entry bundles (the whole log on the
// first call), checks every hash tile over them and the root against the
// latest signed checkpoint. A disagreement — or a resource the checkpoint
// covers that is missing — is an integrity failure: it is logged with what
// differs, the log stops signing and appending, and IntegrityErr returns
// it from then on. Other errors (I/O) are returned and change nothing.
func (l *Log) Audit(ctx context.Context) (*verify.CheckResult, error) {
	s := l.audit
	if err := s.err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	started := time.Now()
	res, err := s.a.Check(ctx)
	if err == nil {
		s.passed = true
		l.cfg.Logger.Debug("log audit passed", "tree_size", res.TreeSize, "from_entry", res.FromEntry, "tiles", res.Tiles, "took", time.Since(started))
		return res, nil
	}
	// A resource the signed checkpoint covers that is gone is as bad as
	// one altered; before any audit passed, a missing checkpoint only
	// means none was published yet.
	missing := errors.Is(err, fs.ErrNotExist) && s.passed
	if !verify.IsMismatch(err) && !missing {
		return nil, fmt.Errorf("log audit: %w", err)
	}
	failed := fmt.Errorf("%w: the stored log disagrees with its signed checkpoint: %w", ErrIntegrity, err)
	s.failed.CompareAndSwap(nil, &failed)
	var m *verify.MismatchError
	kind := "missing"
	if errors.As(err, &m) {
		kind = string(m.Kind)
	}
	l.cfg.Logger.Error("LOG INTEGRITY FAILURE: no more checkpoints are signed and no entries appended until an operator restores the log",
		"kind", kind, "detail", err.Error(), "dir", l.TilesDir())
	return nil, failed
}

// IntegrityErr is the integrity failure the self-audit found (wrapping
// ErrIntegrity), nil while the log has passed every audit.
func (l *Log) IntegrityErr() error { return l.audit.err() }

// auditLoop audits every interval and after every AuditEvery appends,
// until ctx ends or an integrity failure is found.
func (l *Log) auditLoop(ctx context.Context, interval time.Duration) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-l.audit.trigger:
		}
		if _, err := l.Audit(ctx); err != nil {
			if errors.Is(err, ErrIntegrity) {
				return
			}
			if ctx.Err() == nil {
				l.cfg.Logger.Warn("log audit could not run", "err", err)
			}
		}
	}
}

// startAudit audits the whole log once, at Open. A log without a
// checkpoint yet (new, or never published) has nothing signed to audit.
func (l *Log) startAudit(ctx context.Context) error {
	if _, err := l.reader.ReadCheckpoint(ctx); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	started := time.Now()
	res, err := l.Audit(ctx)
	if err != nil {
		return fmt.Errorf("ledger: audit of the log in %s at start: %w", l.TilesDir(), err)
	}
	l.cfg.Logger.Info("log audited at start", "tree_size", res.TreeSize, "tiles", res.Tiles, "took", time.Since(started).Round(time.Millisecond))
	return nil
}
