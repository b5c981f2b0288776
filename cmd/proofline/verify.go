package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/ledger/notesig"
	"github.com/proofline/proofline/ledger/verify"
)

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("verify", stderr)
	bundlePath := fs.String("bundle", "", "proof bundle JSON file (from GET /v1/proof/{record_id}); - for stdin")
	archivePath := fs.String("archive", "", "evidence archive (FILE.tar.zst from proofline archive) to verify offline")
	recordID := fs.String("record", "", "with --archive: prove only this record id")
	previous := fs.String("previous", "", "with --archive: the archive before it, whose checkpoint it must prove it extends")
	logURL := fs.String("log", "", "base URL of a live log to audit (serving /checkpoint and /tile/)")
	keyPath := fs.String("key", "", "the log's verifier key file (DATA/keys/log.pub, or GET /v1/log/key)")
	statePath := fs.String("state", defaultStatePath(), "with --log: file remembering the last verified checkpoint per log")
	token := fs.String("token", os.Getenv("PROOFLINE_TOKEN"), "with --log: bearer token when the log is not public (or PROOFLINE_TOKEN)")
	timeout := fs.Duration("timeout", 5*time.Minute, "with --log: overall time limit")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	policyPath := fs.String("witness-policy", "", "witness policy file: the checkpoint must carry the cosignatures of its quorum")
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	if sources := btoi(*bundlePath != "") + btoi(*logURL != "") + btoi(*archivePath != ""); *keyPath == "" || sources != 1 {
		return exitUsage, fmt.Errorf("%w: give --key and exactly one of --bundle, --log or --archive", errUsage)
	}
	if (*recordID != "" || *previous != "") && *archivePath == "" {
		return exitUsage, fmt.Errorf("%w: --record and --previous are for --archive", errUsage)
	}
	v, err := notesig.LoadVerifier(*keyPath)
	if err != nil {
		return exitUsage, err
	}
	policy, err := loadPolicy(*policyPath)
	if err != nil {
		return exitUsage, err
	}
	var result any
	switch {
	case *bundlePath != "":
		result, err = verifyBundleFile(*bundlePath, v, policy)
	case *archivePath != "":
		result, err = verifyArchiveFile(ctx, *archivePath, *previous, v, policy, *recordID)
	default:
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		result, err = auditLog(ctx, *logURL, *token, *statePath, v, policy)
	}
	if err != nil {
		var mm *verify.MismatchError
		if errors.As(err, &mm) {
			fmt.Fprintf(stdout, "FAILED: %v\n", err)
			return exitMismatch, nil
		}
		return exitUsage, err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return exitOK, enc.Encode(result)
	}
	fmt.Fprintf(stdout, "OK: %s\n", describe(result))
	return exitOK, nil
}

// verifyArchiveFile verifies an archive and, given the previous one, that
// it proves its checkpoint extends that archive's.
func verifyArchiveFile(ctx context.Context, path, previous string, v note.Verifier, policy *verify.Policy, recordID string) (*verify.ArchiveResult, error) {
	files, err := readArchive(path)
	if err != nil {
		return nil, err
	}
	res, err := verify.VerifyArchive(ctx, files, v, policy, recordID)
	if err != nil || previous == "" {
		return res, err
	}
	prevFiles, err := readArchive(previous)
	if err != nil {
		return nil, fmt.Errorf("--previous: %w", err)
	}
	prev, err := verify.OpenArchiveCheckpoint(prevFiles, v)
	if err != nil {
		return nil, fmt.Errorf("--previous: %w", err)
	}
	if err := verify.CheckFollows(prev, res); err != nil {
		return nil, err
	}
	return res, nil
}

func verifyBundleFile(path string, v note.Verifier, policy *verify.Policy) (*verify.Result, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	var b verify.Bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("%s is not a proof bundle: %w", path, err)
	}
	// An error answer saved instead of a bundle is the user's problem to
	// see, not evidence of tampering.
	if len(b.Record) == 0 || b.Checkpoint == "" {
		return nil, fmt.Errorf("%s is not a proof bundle (no record or checkpoint): %.200s", path, raw)
	}
	res, err := verify.VerifyBundle(&b, v)
	if err != nil || policy == nil {
		return res, err
	}
	if res.Witnesses, err = verify.CheckWitnesses([]byte(b.Checkpoint), policy); err != nil {
		return nil, err
	}
	return res, nil
}

func auditLog(ctx context.Context, base, token, statePath string, v note.Verifier, policy *verify.Policy) (*verify.AuditResult, error) {
	f, err := logFetcher(base, token)
	if err != nil {
		return nil, err
	}
	states, err := verify.LoadState(statePath)
	if err != nil {
		return nil, err
	}
	res, next, err := verify.Audit(ctx, f, v, states.Get(v.Name()))
	if err != nil {
		return nil, err
	}
	// A checkpoint without the quorum is not remembered: the next audit
	// must not be judged against a history no witness vouched for.
	if policy != nil {
		if res.Witnesses, err = verify.CheckWitnesses([]byte(next.Checkpoint), policy); err != nil {
			return nil, err
		}
	}
	states.Put(next)
	if err := states.Save(statePath); err != nil {
		return nil, err
	}
	return res, nil
}

// logFetcher reads a live log's tlog-tiles resources at base.
func logFetcher(base, token string) (*client.HTTPFetcher, error) {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%w: --log must be an http(s) URL", errUsage)
	}
	f, err := client.NewHTTPFetcher(u, &http.Client{Timeout: time.Minute})
	if err != nil {
		return nil, err
	}
	if token != "" {
		f.SetAuthorizationHeader("Bearer " + token)
	}
	return f, nil
}

func defaultStatePath() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "proofline", "verify-state.json")
	}
	return "proofline-verify-state.json"
}

func describe(r any) string {
	switch r := r.(type) {
	case *verify.Result:
		return fmt.Sprintf("leaf %d is included in %s at tree size %d (root %x)%s", r.LeafIndex, r.Origin, r.TreeSize, r.Root, describeWitnesses(r.Witnesses))
	case *verify.AuditResult:
		return fmt.Sprintf("%s: %d entries and %d tiles re-derived, root matches the signed checkpoint at size %d%s", r.Origin, r.Entries, r.Tiles, r.TreeSize, describeWitnesses(r.Witnesses))
	case *verify.ArchiveResult:
		if r.Record != nil {
			return fmt.Sprintf("record %s is leaf %d of %s, proven from the archive against the checkpoint at size %d (root %x)%s", r.Record.ID, r.Record.LeafIndex, r.Origin, r.TreeSize, r.Root, describeWitnesses(r.Witnesses))
		}
		return fmt.Sprintf("archive of %s leaves %d to %d: %d records proven against the checkpoint at size %d (root %x)%s%s", r.Origin, r.From, r.To-1, r.Proven, r.TreeSize, r.Root, describeExtends(r.Extends), describeWitnesses(r.Witnesses))
	}
	return fmt.Sprint(r)
}

func describeExtends(e *verify.EarlierCheckpoint) string {
	if e == nil {
		return ""
	}
	return fmt.Sprintf(", which extends the earlier checkpoint at size %d (root %x)", e.TreeSize, e.Root)
}

func describeWitnesses(w *verify.WitnessResult) string {
	if w == nil {
		return ""
	}
	return fmt.Sprintf("; cosigned by witnesses %s (quorum %s)", strings.Join(w.Cosigners, ", "), w.Quorum)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// loadPolicy reads a witness policy file; nil when path is empty.
func loadPolicy(path string) (*verify.Policy, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: --witness-policy: %v", errUsage, err)
	}
	p, err := verify.ParsePolicy(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: --witness-policy %s: %v", errUsage, path, err)
	}
	return p, nil
}
