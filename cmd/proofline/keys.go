package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/internal/auth"
	"github.com/proofline/proofline/ledger/notesig"
)

// File names under DATA/keys.
const (
	logKeyFile   = "log.key"
	logPubFile   = "log.pub"
	tokenKeyFile = "token.key"
	// natsTokenFile holds the token of the exposed embedded NATS.
	natsTokenFile = "nats.token"
	// attestKeyFile holds the key ingest attests its records with.
	attestKeyFile = "attest.key"
)

func keysDir(data string) string { return filepath.Join(data, "keys") }

// writeKeyPair creates a new log key pair in dir, refusing to overwrite.
func writeKeyPair(dir, origin string) (verifierKey string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	priv, vkey, err := notesig.Keygen(origin)
	if err != nil {
		return "", err
	}
	if err := writeNew(filepath.Join(dir, logKeyFile), priv, 0o600); err != nil {
		return "", err
	}
	if err := writeNew(filepath.Join(dir, logPubFile), []byte(vkey+"\n"), 0o644); err != nil {
		return "", err
	}
	return vkey, nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	_, werr := f.Write(data)
	if err := f.Sync(); werr == nil {
		werr = err
	}
	if err := f.Close(); werr == nil {
		werr = err
	}
	return werr
}

// logKeys loads the log's key pair from DATA/keys, creating it on first
// start. origin, when set, must match an existing key's origin.
func logKeys(data, origin string) (note.Signer, note.Verifier, string, bool, error) {
	dir := keysDir(data)
	pubPath := filepath.Join(dir, logPubFile)
	created := false
	raw, err := os.ReadFile(pubPath)
	if errors.Is(err, os.ErrNotExist) {
		if origin == "" {
			origin = defaultOrigin()
		}
		if _, err := writeKeyPair(dir, origin); err != nil {
			return nil, nil, "", false, fmt.Errorf("create log key: %w", err)
		}
		created = true
		raw, err = os.ReadFile(pubPath)
	}
	if err != nil {
		return nil, nil, "", false, fmt.Errorf("read log public key: %w", err)
	}
	vkey := strings.TrimSpace(string(raw))
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, "", false, fmt.Errorf("%s: %w", pubPath, err)
	}
	if origin != "" && origin != v.Name() {
		return nil, nil, "", false, fmt.Errorf("--origin %q does not match the existing log key's origin %q", origin, v.Name())
	}
	s, signerVKey, err := notesig.LoadSigner(v.Name(), filepath.Join(dir, logKeyFile))
	if err != nil {
		return nil, nil, "", false, fmt.Errorf("load log key: %w", err)
	}
	if signerVKey != vkey {
		return nil, nil, "", false, fmt.Errorf("%s does not belong to %s", filepath.Join(dir, logKeyFile), pubPath)
	}
	return s, v, vkey, created, nil
}

func defaultOrigin() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "proofline.local/" + host
}

// natsToken loads DATA/keys/nats.token, the token producers present to the
// embedded NATS that --nats-listen exposes, creating it on first use.
func natsToken(data string) (string, error) {
	if err := os.MkdirAll(keysDir(data), 0o700); err != nil {
		return "", err
	}
	p := filepath.Join(keysDir(data), natsTokenFile)
	if b, err := os.ReadFile(p); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("%s is empty", p)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := hex.EncodeToString(raw[:])
	if err := os.WriteFile(p, []byte(t+"\n"), 0o600); err != nil {
		return "", err
	}
	return t, nil
}

func tokenKeys(data string) (*auth.Keys, error) {
	if err := os.MkdirAll(keysDir(data), 0o700); err != nil {
		return nil, err
	}
	return auth.LoadOrCreateKeys(filepath.Join(keysDir(data), tokenKeyFile))
}

func cmdKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	origin := fs.String("origin", "", "log origin (the checkpoint's first line), e.g. example.com/proofline/prod")
	out := fs.String("out", "", "directory to write log.key and log.pub into (put them in DATA/keys for serve)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *origin == "" || *out == "" {
		return fmt.Errorf("%w: --origin and --out are required", errUsage)
	}
	vkey, err := writeKeyPair(*out, *origin)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}

func cmdToken(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "issue" {
		return fmt.Errorf("%w: proofline token issue --data DIR --principal P --scope S --ttl D", errUsage)
	}
	fs := newFlagSet("token issue", stderr)
	data := fs.String("data", "./proofline-data", "data directory holding keys/token.key")
	principal := fs.String("principal", "", "who the token is for, e.g. gw-1")
	scope := fs.String("scope", "", "ingest, query or admin")
	ttl := fs.Duration("ttl", 0, "lifetime, e.g. 1h (at most 720h)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *principal == "" || *scope == "" || *ttl == 0 {
		return fmt.Errorf("%w: --principal, --scope and --ttl are required", errUsage)
	}
	sc, err := auth.ParseScope(*scope)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	// Only a key the server uses can sign a token it accepts: a data dir
	// without one is a typo, not a reason to make a new key.
	keyPath := filepath.Join(keysDir(*data), tokenKeyFile)
	if _, err := os.Stat(keyPath); err != nil {
		return fmt.Errorf("%w: --data %s is not a proofline data directory (%v); run proofline serve --data %s once to create its keys", errUsage, *data, err, *data)
	}
	k, err := auth.LoadOrCreateKeys(keyPath)
	if err != nil {
		return err
	}
	tok, err := k.Issue(*principal, sc, *ttl)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
