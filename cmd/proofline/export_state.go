package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/config"
	"github.com/proofline/proofline/exporters/kvstate"
	"github.com/proofline/proofline/internal/bus"
)

// stateFlags say where an export command finds the exporters' state: a
// local directory (--state, or the file's state_dir, or DATA/exporters),
// or a JetStream key-value bucket (--nats), so that an exporter can move
// hosts and a standby take a sink over.
type stateFlags struct {
	dir      string
	natsURL  string
	auth     bus.ClientAuth
	bucket   string
	replicas int
	lease    time.Duration
}

func (s *stateFlags) register(fs *flag.FlagSet, run bool) {
	fs.StringVar(&s.dir, "state", "", "state directory (cursors, dead letters); default: the file's state_dir, else DATA/exporters")
	fs.StringVar(&s.natsURL, "nats", "", "keep the state in a JetStream key-value bucket on this NATS (comma-separated URLs) instead of a directory")
	registerNATSAuth(fs, &s.auth)
	fs.StringVar(&s.bucket, "kv-bucket", kvstate.DefaultBucket, "with --nats: the key-value bucket")
	if run {
		fs.IntVar(&s.replicas, "kv-replicas", 1, "with --nats: replicas of the bucket when it is created (3 on a cluster)")
		fs.DurationVar(&s.lease, "lease", 15*time.Second, "with --nats: how long a sink stays held by a runner that stopped renewing (a standby takes over after this)")
	}
}

// registerNATSAuth adds the flags of proofline's identity on an external
// NATS (serve --nats, export --nats).
func registerNATSAuth(fs *flag.FlagSet, a *bus.ClientAuth) {
	fs.StringVar(&a.CredsFile, "nats-creds", "", "credentials file (user JWT and nkey seed) for the NATS of --nats")
	fs.StringVar(&a.NKeyFile, "nats-nkey", "", "file holding a user nkey seed for the NATS of --nats")
	fs.StringVar(&a.TokenFile, "nats-token-file", "", "file holding a token for the NATS of --nats")
	fs.StringVar(&a.CAFile, "nats-ca", "", "PEM roots to verify the --nats servers' certificates; makes TLS mandatory")
	fs.StringVar(&a.CertFile, "nats-cert", "", "client certificate (PEM) for mutual TLS with the NATS of --nats")
	fs.StringVar(&a.KeyFile, "nats-key", "", "key of --nats-cert (PEM)")
}

// stateView is what the inspecting commands read and steer.
type stateView interface {
	Sinks() ([]string, error)
	LoadCursor(sink string) (exporters.Cursor, error)
	LoadStatus(sink string) (exporters.Status, error)
	DeadLetters(sink string) ([]exporters.DeadLetter, error)
	RequestReplay(sink string, from uint64) error
	LoadTrusted() ([]byte, error)
}

// dirView reads a state directory without taking its lock, beside a
// running exporter.
type dirView string

func (d dirView) Sinks() ([]string, error) { return exporters.CursorSinks(string(d)) }
func (d dirView) LoadCursor(sink string) (exporters.Cursor, error) {
	return exporters.LoadCursor(string(d), sink)
}
func (d dirView) LoadStatus(sink string) (exporters.Status, error) {
	return exporters.LoadStatus(string(d), sink)
}
func (d dirView) DeadLetters(sink string) ([]exporters.DeadLetter, error) {
	return exporters.ReadDeadLetters(string(d), sink)
}
func (d dirView) RequestReplay(sink string, from uint64) error {
	if sinks, err := exporters.CursorSinks(string(d)); err != nil || !slices.Contains(sinks, sink) {
		return fmt.Errorf("%w: no sink %q in %s", errUsage, sink, string(d))
	}
	return exporters.RequestReplay(string(d), sink, from)
}
func (d dirView) LoadTrusted() ([]byte, error) { return exporters.LoadTrusted(string(d)) }

// kvView is a bucket's state for the inspecting commands.
type kvView struct{ *kvstate.State }

func (k kvView) RequestReplay(sink string, from uint64) error {
	sinks, err := k.Sinks()
	if err != nil {
		return err
	}
	for _, s := range sinks {
		if s == sink {
			return k.State.RequestReplay(sink, from)
		}
	}
	return fmt.Errorf("%w: no sink %q in the bucket", errUsage, sink)
}

// openKV connects to NATS and opens the bucket.
func (s *stateFlags) openKV(ctx context.Context, holder string, existing bool) (*kvstate.State, func(), error) {
	if err := s.auth.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	opts, err := s.auth.Options()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	opts = append(opts, nats.Name("proofline-exporter"), nats.MaxReconnects(-1))
	nc, err := nats.Connect(s.natsURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", s.natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	st, err := kvstate.Open(ctx, js, kvstate.Config{Bucket: s.bucket, Replicas: s.replicas, Lease: s.lease, Holder: holder, Existing: existing})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return st, nc.Close, nil
}

func (s *stateFlags) checkUsage() error {
	if s.natsURL == "" && !s.auth.IsZero() {
		return fmt.Errorf("%w: the --nats-* flags go with --nats", errUsage)
	}
	if s.natsURL != "" && s.dir != "" {
		return fmt.Errorf("%w: give --state or --nats, not both", errUsage)
	}
	return nil
}

// openRun opens the state a runner delivers from: the bucket (shared,
// leased per sink) or the directory (locked).
func (s *stateFlags) openRun(ctx context.Context, data string, f *config.File) (exporters.State, string, func(), error) {
	if err := s.checkUsage(); err != nil {
		return nil, "", nil, err
	}
	if s.natsURL != "" {
		st, closeNC, err := s.openKV(ctx, "", false)
		if err != nil {
			return nil, "", nil, err
		}
		return st, "nats bucket " + s.bucket + " as " + st.Holder(), closeNC, nil
	}
	dir, err := stateDir(s.dir, data, f)
	if err != nil {
		return nil, "", nil, err
	}
	st, err := exporters.OpenStateDir(dir)
	if err != nil {
		return nil, "", nil, err
	}
	return st, dir, func() { st.Close() }, nil
}

// openView opens the state for status, replay and deadletters.
func (s *stateFlags) openView(ctx context.Context, data string) (stateView, string, func(), error) {
	if err := s.checkUsage(); err != nil {
		return nil, "", nil, err
	}
	if s.natsURL != "" {
		st, closeNC, err := s.openKV(ctx, "reader", true)
		if err != nil {
			return nil, "", nil, err
		}
		return kvView{st}, "bucket " + s.bucket, closeNC, nil
	}
	dir, err := stateDir(s.dir, data, nil)
	if err != nil {
		return nil, "", nil, err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, "", nil, fmt.Errorf("%w: no exporter state in %s", errUsage, dir)
	}
	return dirView(dir), dir, func() {}, nil
}
