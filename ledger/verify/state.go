package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// State is what an auditor remembers of a log: the last checkpoint it
// verified. The next audit must find a tree that extends it.
type State struct {
	Origin     string `json:"origin"`
	Size       uint64 `json:"size"`
	Root       []byte `json:"root"`
	Checkpoint string `json:"checkpoint"`
}

// States is a state file: one State per log origin.
type States map[string]*State

// LoadState reads a state file; a missing file is an empty one.
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
	return s, nil
}

// Get returns the state for origin, or nil.
func (s States) Get(origin string) *State { return s[origin] }

// Put records st.
func (s States) Put(st *State) { s[st.Origin] = st }

// Save writes the file atomically (temp file and rename), so a crash
// never leaves an auditor without its last known-good checkpoint.
func (s States) Save(path string) error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
