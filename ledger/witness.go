package ledger

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"

	"github.com/proofline/proofline/ledger/verify"
)

// WitnessConfig makes the log publish only checkpoints cosigned by a
// quorum of independent witnesses (C2SP tlog-witness). A witness cosigns
// a checkpoint only if it is consistent with every checkpoint of the log
// it cosigned before, so a published checkpoint cannot belong to a
// rewritten or split history unless the quorum colludes.
type WitnessConfig struct {
	// Policy is the policy file's text, in the format tessera's
	// NewWitnessGroupFromPolicy reads; every witness needs a URL.
	Policy []byte
	// FailOpen publishes a checkpoint without the quorum when the quorum
	// cannot be reached in time. Off by default: then nothing new is
	// published until the quorum answers, and the unpublished leaves wait.
	FailOpen bool
	// Timeout bounds one round of asking the witnesses (tessera's default
	// when zero).
	Timeout time.Duration
}

// Validate parses the policy with tessera and with the auditors' parser;
// both must accept it, and every witness must have a URL to be asked at.
func (c *WitnessConfig) Validate() error {
	_, _, err := c.parse()
	return err
}

func (c *WitnessConfig) parse() (tessera.WitnessGroup, *verify.Policy, error) {
	g, err := tessera.NewWitnessGroupFromPolicy(c.Policy)
	if err != nil {
		return tessera.WitnessGroup{}, nil, fmt.Errorf("witness policy: %w", err)
	}
	p, err := verify.ParsePolicy(c.Policy)
	if err != nil {
		return tessera.WitnessGroup{}, nil, err
	}
	if len(p.Witnesses) == 0 {
		return tessera.WitnessGroup{}, nil, errors.New("witness policy: no witness lines")
	}
	for _, w := range p.Witnesses {
		if w.URL == "" {
			return tessera.WitnessGroup{}, nil, fmt.Errorf("witness policy: witness %s has no URL to send checkpoints to", w.Name)
		}
	}
	if c.Timeout < 0 {
		return tessera.WitnessGroup{}, nil, errors.New("witness timeout must not be negative")
	}
	return g, p, nil
}

// Refusal reasons a witness gives for not cosigning.
const (
	// RefusedInconsistent: the checkpoint is not consistent with one the
	// witness cosigned (same size with another root, or a consistency
	// proof that fails): the log forked.
	RefusedInconsistent = "inconsistent"
	// RefusedRollback: the witness has cosigned a larger tree than the one
	// offered: the log was rolled back.
	RefusedRollback = "rollback"
	// RefusedUnknownLog: the witness does not know the log's origin.
	RefusedUnknownLog = "unknown_log"
	// RefusedKey: the witness does not trust the log's key.
	RefusedKey = "untrusted_key"
	// RefusedOther: any other answer that is not a cosignature.
	RefusedOther = "other"
)

// WitnessState is the log's view of one witness, from its last answer.
type WitnessState struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Up is true when the witness's last answer was a cosignature.
	Up bool `json:"up"`
	// LastError is why the last answer was not a cosignature.
	LastError string `json:"last_error,omitempty"`
	// Refusals counts answers that were refusals, by reason.
	Refusals map[string]uint64 `json:"refusals,omitempty"`
}

// WitnessStatus is the state of witnessing.
type WitnessStatus struct {
	Configured bool   `json:"configured"`
	FailOpen   bool   `json:"fail_open"`
	Policy     string `json:"quorum"`
	// Quorum is true when the witnesses whose last answer was a
	// cosignature satisfy the policy (true before any round).
	Quorum    bool           `json:"quorum_reachable"`
	Witnesses []WitnessState `json:"witnesses"`
}

// witnessing observes every request tessera makes to the witnesses,
// through the HTTP client it is given: tessera reports a failed round only
// to its own logs, and proofline must say why publication stopped.
type witnessing struct {
	cfg    WitnessConfig
	group  tessera.WitnessGroup
	policy *verify.Policy
	logger *slog.Logger
	next   http.RoundTripper

	mu    sync.Mutex
	byURL map[string]*WitnessState
	asked bool // at least one answer recorded
}

func newWitnessing(cfg *WitnessConfig, logger *slog.Logger) (*witnessing, error) {
	if cfg == nil {
		return nil, nil
	}
	g, p, err := cfg.parse()
	if err != nil {
		return nil, err
	}
	w := &witnessing{cfg: *cfg, group: g, policy: p, logger: logger, next: http.DefaultTransport, byURL: map[string]*WitnessState{}}
	for _, pw := range p.Witnesses {
		u, _ := url.Parse(pw.URL)
		// The URL tessera posts to (NewWitness).
		w.byURL[u.JoinPath("/add-checkpoint").String()] = &WitnessState{Name: pw.Name, URL: pw.URL, Up: true}
	}
	return w, nil
}

// httpClient is the client tessera's posix driver uses for witnesses.
func (w *witnessing) httpClient() *http.Client {
	if w == nil {
		return nil
	}
	return &http.Client{Transport: w}
}

func (w *witnessing) appendOptions(o *tessera.AppendOptions) *tessera.AppendOptions {
	if w == nil {
		return o
	}
	return o.WithWitnesses(w.group, &tessera.WitnessOptions{Timeout: w.cfg.Timeout, FailOpen: w.cfg.FailOpen})
}

// firstPublishFailed reports whether opening a new log failed only because
// its first (empty) checkpoint found no quorum. tessera has then written
// the empty tree's state, and a second open starts the log with no
// checkpoint published yet; its publishing loop keeps asking the
// witnesses. Without this, a new log could not start while its witnesses
// are down.
func (w *witnessing) firstPublishFailed(err error) bool {
	return w != nil && err != nil && strings.Contains(err.Error(), "failed to publish checkpoint")
}

// RoundTrip forwards a request to a witness and records its answer.
func (w *witnessing) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := w.next.RoundTrip(req)
	if err != nil {
		// A cancelled request is one tessera no longer needed: the quorum
		// was met by others. It says nothing about this witness.
		if !errors.Is(err, context.Canceled) {
			w.record(req.URL.String(), "", fmt.Sprintf("unreachable: %v", err))
		}
		return nil, err
	}
	rb, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	if rerr != nil {
		return resp, nil
	}
	reason, msg := classify(resp, rb, body)
	switch {
	case resp.StatusCode == http.StatusOK:
		w.record(req.URL.String(), "", "")
	case reason != "":
		w.record(req.URL.String(), reason, msg)
	}
	return resp, nil
}

// classify turns a witness's answer into a refusal reason (C2SP
// tlog-witness status codes). A 409 with the witness's size smaller than
// the checkpoint's is the protocol's resynchronisation, not a refusal.
func classify(resp *http.Response, respBody, reqBody []byte) (reason, msg string) {
	switch resp.StatusCode {
	case http.StatusOK:
		return "", ""
	case http.StatusConflict:
		if resp.Header.Get("Content-Type") == "text/x.tlog.size" {
			theirs, err := strconv.ParseUint(strings.TrimSpace(string(respBody)), 10, 64)
			if err != nil {
				return RefusedOther, fmt.Sprintf("409 with an unreadable size %q", respBody)
			}
			if ours, ok := checkpointSize(reqBody); ok && theirs > ours {
				return RefusedRollback, fmt.Sprintf("the witness has cosigned a tree of size %d, larger than this checkpoint's %d: the log was rolled back or forked", theirs, ours)
			}
			return "", ""
		}
		return RefusedInconsistent, "the witness cosigned another root for this tree size: the log has forked"
	case http.StatusUnprocessableEntity:
		return RefusedInconsistent, "the consistency proof from the tree the witness cosigned does not verify: the log has forked"
	case http.StatusNotFound:
		return RefusedUnknownLog, "the witness does not know this log's origin (register it with the witness)"
	case http.StatusForbidden:
		return RefusedKey, "the witness does not trust this log's key"
	}
	return RefusedOther, fmt.Sprintf("answered %s: %.200s", resp.Status, bytes.TrimSpace(respBody))
}

// checkpointSize reads the tree size from an add-checkpoint request body
// ("old N", proof lines, a blank line, then the checkpoint).
func checkpointSize(body []byte) (uint64, bool) {
	_, cp, ok := bytes.Cut(body, []byte("\n\n"))
	if !ok {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(cp))
	sc.Scan() // origin
	if !sc.Scan() {
		return 0, false
	}
	n, err := strconv.ParseUint(sc.Text(), 10, 64)
	return n, err == nil
}

func (w *witnessing) record(u, reason, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, ok := w.byURL[u]
	if !ok {
		return
	}
	w.asked = true
	if msg == "" {
		if !st.Up {
			w.logger.Info("witness cosigning again", "witness", st.Name)
		}
		st.Up, st.LastError = true, ""
		return
	}
	if reason != "" {
		if st.Refusals == nil {
			st.Refusals = map[string]uint64{}
		}
		st.Refusals[reason]++
	}
	switch reason {
	case RefusedInconsistent, RefusedRollback:
		// Never expected of an honest log: this is the alarm.
		w.logger.Error("witness refused a checkpoint as inconsistent with its history: fork or rollback, checkpoint not published", "witness", st.Name, "reason", reason, "detail", msg)
	default:
		if st.Up || st.LastError != msg {
			w.logger.Warn("witness did not cosign", "witness", st.Name, "reason", reason, "detail", msg)
		}
	}
	st.Up, st.LastError = false, msg
}

func (w *witnessing) status() WitnessStatus {
	if w == nil {
		return WitnessStatus{Quorum: true}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := WitnessStatus{Configured: true, FailOpen: w.cfg.FailOpen, Policy: w.policy.Quorum()}
	up := map[string]bool{}
	for _, st := range w.byURL {
		c := *st
		if st.Refusals != nil {
			c.Refusals = make(map[string]uint64, len(st.Refusals))
			for k, v := range st.Refusals {
				c.Refusals[k] = v
			}
		}
		s.Witnesses = append(s.Witnesses, c)
		up[st.Name] = st.Up
	}
	sort.Slice(s.Witnesses, func(i, j int) bool { return s.Witnesses[i].Name < s.Witnesses[j].Name })
	s.Quorum = w.policy.Satisfied(func(n string) bool { return up[n] })
	return s
}

// WitnessStatus reports the witnesses' last answers and whether they meet
// the quorum. Without a witness policy, Configured is false.
func (l *Log) WitnessStatus() WitnessStatus { return l.wit.status() }

// WitnessReady returns an error naming the witnesses that did not cosign
// when their last answers do not meet the quorum and the log is therefore
// not publishing (it returns nil without a policy, and with FailOpen,
// which publishes anyway).
func (l *Log) WitnessReady(ctx context.Context) error {
	s := l.wit.status()
	if !s.Configured || s.Quorum || s.FailOpen {
		return nil
	}
	var why []string
	for _, w := range s.Witnesses {
		if !w.Up {
			why = append(why, fmt.Sprintf("%s: %s", w.Name, w.LastError))
		}
	}
	msg := fmt.Sprintf("witness quorum %s not reached, no checkpoint is published (%s)", s.Policy, strings.Join(why, "; "))
	if n, err := l.UnpublishedLeaves(ctx); err == nil && n > 0 {
		msg += fmt.Sprintf("; %d leaves wait for publication", n)
	}
	return errors.New(msg)
}

// UnpublishedLeaves is the number of sequenced leaves no published
// checkpoint covers yet: the backlog that grows while witnesses are
// unreachable.
func (l *Log) UnpublishedLeaves(ctx context.Context) (uint64, error) {
	size, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return 0, err
	}
	var published uint64
	if cp, _, err := l.Checkpoint(ctx); err == nil {
		published = cp.Size
	}
	if size < published {
		return 0, nil
	}
	return size - published, nil
}

// Witnessed reports whether the log has a witness policy.
func (l *Log) Witnessed() bool { return l.wit != nil }
