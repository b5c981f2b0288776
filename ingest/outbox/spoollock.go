package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// A spool is written by one process only: two processes appending to one
// file each at the offset it believes is the end overwrite each other's
// records (the loss issue 9 reproduced: 200 + 115 of 400). So a spool is
// owned through an exclusive lock on "<spool>.lock", held for as long as
// the outbox is open, and the lock file names its holder for the error
// another process gets.

// ErrSpoolLocked is matched (errors.Is) by the error Open returns when
// another live process holds the spool; the error is a *SpoolLockedError
// that names the path and the holder.
var ErrSpoolLocked = errors.New("outbox spool held by another process")

// errLocked is tryLock's "someone else holds it".
var errLocked = errors.New("locked")

// Holder identifies the process that owns a spool, as written into its
// lock file.
type Holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "an unknown process"
	}
	return fmt.Sprintf("pid %d on %s (since %s)", h.PID, h.Host, h.Started.UTC().Format(time.RFC3339))
}

// SpoolLockedError says which spool is taken and by whom.
type SpoolLockedError struct {
	Path   string
	Holder Holder
}

func (e *SpoolLockedError) Error() string {
	return fmt.Sprintf("outbox spool %s is in use by %s: every process needs a spool of its own (outbox.Config.SpoolDir gives each one)", e.Path, e.Holder)
}

func (e *SpoolLockedError) Is(target error) bool { return target == ErrSpoolLocked }

// thisProcess is the Holder an outbox writes into the lock files it takes.
func thisProcess(started time.Time) Holder {
	host, _ := os.Hostname()
	return Holder{PID: os.Getpid(), Host: host, Started: started}
}

// lockSpool takes the lock of the spool at path, or fails with a
// *SpoolLockedError. It returns the open lock file: closing it releases
// the lock.
func lockSpool(path string, me Holder) (*os.File, Holder, error) {
	lockPath := path + ".lock"
	// An owner done with its spool removes the lock file while holding the
	// lock; whoever opened the file just before that locks a file no one
	// else will ever see. A lock counts only on the file still at lockPath;
	// otherwise open it again.
	for range 5 {
		f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, Holder{}, fmt.Errorf("outbox spool lock: %w", err)
		}
		if err := tryLock(f); err != nil {
			_ = f.Close()
			if errors.Is(err, errLocked) {
				return nil, Holder{}, &SpoolLockedError{Path: path, Holder: readHolder(lockPath)}
			}
			return nil, Holder{}, fmt.Errorf("outbox spool lock %s: %w", lockPath, err)
		}
		if !sameFile(f, lockPath) {
			_ = f.Close()
			continue
		}
		prev := readHolderFrom(f)
		b, _ := json.Marshal(me)
		if err := f.Truncate(0); err != nil {
			_ = f.Close()
			return nil, Holder{}, fmt.Errorf("outbox spool lock %s: %w", lockPath, err)
		}
		if _, err := f.WriteAt(append(b, '\n'), 0); err != nil {
			_ = f.Close()
			return nil, Holder{}, fmt.Errorf("outbox spool lock %s: %w", lockPath, err)
		}
		return f, prev, nil
	}
	return nil, Holder{}, fmt.Errorf("outbox spool lock %s keeps being replaced", lockPath)
}

// sameFile reports whether the open file f is still the file at path.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

func readHolder(lockPath string) Holder {
	f, err := os.Open(lockPath)
	if err != nil {
		return Holder{}
	}
	defer f.Close()
	return readHolderFrom(f)
}

func readHolderFrom(f *os.File) Holder {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 4096))
	if err != nil {
		return Holder{}
	}
	var h Holder
	_ = json.Unmarshal(b, &h)
	return h
}
