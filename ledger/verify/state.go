package verify

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// State is what an auditor remembers of a log: the last checkpoint it
// verified. The next audit must find a tree that extends it; that memory
// is what turns a log rewriting its history into a detectable fork.
type State struct {
	Origin     string `json:"origin"`
	Size       uint64 `json:"size"`
	Root       []byte `json:"root"`
	Checkpoint string `json:"checkpoint"`
	// Frontier is the compact range of the tree at Size (the roots of its
	// complete subtrees, left to right), kept by Follow so the next check
	// hashes only the new entries. Empty in states saved by Audit.
	Frontier [][]byte `json:"frontier,omitempty"`
}

// States is a state file: one State per log origin, so one file serves an
// auditor of several logs.
type States map[string]*State

// LoadState reads a state file. A missing file is an empty one (no prior
// audit); a corrupt one is an error rather than a silent fresh start,
// which would forget the history a fork is judged against.
func LoadState(path string) (States, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return States{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	s := States{}
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	for origin, st := range s {
		switch {
		case st == nil || st.Origin != origin:
			return nil, fmt.Errorf("state file %s: entry %q is not that log's state", path, origin)
		case st.Size > 0 && len(st.Root) != sha256.Size:
			return nil, fmt.Errorf("state file %s: log %q: root of %d bytes", path, origin, len(st.Root))
		}
	}
	return s, nil
}

// Get returns the state of the log origin, or nil.
func (s States) Get(origin string) *State { return s[origin] }

// Put records st as its log's state.
func (s States) Put(st *State) { s[st.Origin] = st }

// Save writes the file atomically (temp file, fsync, rename, then a
// best-effort fsync of the directory), so a crash never leaves an auditor without its last
// known-good checkpoint.
func (s States) Save(path string) (err error) {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(raw); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable where the OS allows syncing a
// directory (not all do, hence best effort: the file is complete either
// way, only the rename might be lost in a crash).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
