package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/config"
	"github.com/proofline/proofline/exporters/kvstate"
	"github.com/proofline/proofline/internal/metrics"
	"github.com/proofline/proofline/internal/supervise"
	"github.com/proofline/proofline/ledger"
)

// exportersFlag is serve's --exporters: the delivery runner of
// `proofline export run`, inside the server, reading the log it signs.
type exportersFlag struct{ file string }

func (e *exportersFlag) register(fs *flag.FlagSet) {
	fs.StringVar(&e.file, "exporters", "", "run the exporters of this file (as `proofline export run --data`) inside serve, from the local log; state in the file's state_dir or DATA/exporters")
}

// load reads and checks the exporters file before any engine starts.
func (e *exportersFlag) load(roles roleSet, metricsListen string) (*config.File, error) {
	if e.file == "" {
		return nil, nil
	}
	if !roles["signer"] {
		return nil, errors.New("--exporters needs the signer role, which holds the log (elsewhere run proofline export run --log URL)")
	}
	f, err := config.Load(e.file)
	if err != nil {
		return nil, fmt.Errorf("--exporters: %w", err)
	}
	for _, s := range f.Sinks {
		if s.Type == "prometheus" && metricsListen == "" {
			return nil, fmt.Errorf("--exporters: sink %q is a prometheus sink: it needs --metrics-listen", s.Name)
		}
	}
	f.Version = version
	return f, nil
}

// exportersRole runs the exporters under serve's supervisor. The first
// run's sinks and state directory are opened at start, so a missing secret
// or an exporter already running on the state directory fails the start;
// a restart (after the log proved inconsistent, or a state write failed)
// builds them again.
type exportersRole struct {
	file   *config.File
	dir    string
	kv     *kvstate.State // the state when NATS is external and the file names no state_dir
	src    *exporters.Source
	met    *metrics.Registry
	logger *slog.Logger

	first *exportersAttempt
}

type exportersAttempt struct {
	specs []exporters.SinkSpec
	state exporters.State
	close func()
	reg   prometheus.Registerer
}

// newExportersRole opens the exporters' state: with an external NATS (js
// not nil) in its key-value bucket, as `export run --nats` keeps it, so
// that the sinks can move to another serve (or an `export run`) with
// their cursors; otherwise, or when the file names a state_dir, in a
// directory.
func newExportersRole(ctx context.Context, f *config.File, data string, js jetstream.JetStream, replicas int, lg *ledger.Log, v note.Verifier, met *metrics.Registry, logger *slog.Logger) (*exportersRole, error) {
	dir, err := stateDir("", data, f)
	if err != nil {
		return nil, err
	}
	r := &exportersRole{file: f, dir: dir, src: exporters.NewFileSource(lg.TilesDir(), v), met: met, logger: logger.With("role", "exporters")}
	if js != nil && f.StateDir == "" {
		if r.kv, err = kvstate.Open(ctx, js, kvstate.Config{Replicas: replicas}); err != nil {
			return nil, fmt.Errorf("--exporters: %w", err)
		}
		r.dir = "nats bucket " + kvstate.DefaultBucket
	}
	if r.first, err = r.open(); err != nil {
		return nil, fmt.Errorf("--exporters: %w", err)
	}
	return r, nil
}

func (r *exportersRole) open() (*exportersAttempt, error) {
	a := &exportersAttempt{}
	if r.met != nil {
		a.reg = r.met.ForAttempt("exporters")
	}
	// Build reads the prometheus sinks' registerer from the file.
	r.file.Registerer = a.reg
	specs, err := r.file.Build()
	if err != nil {
		closeSinks(specs)
		return nil, err
	}
	a.specs = specs
	if r.kv != nil {
		a.state, a.close = r.kv, func() {}
		return a, nil
	}
	st, err := exporters.OpenStateDir(r.dir)
	if err != nil {
		closeSinks(specs)
		return nil, err
	}
	a.state, a.close = st, func() { st.Close() }
	return a, nil
}

func closeSinks(specs []exporters.SinkSpec) {
	for _, s := range specs {
		_ = s.Sink.Close(context.Background())
	}
}

func (r *exportersRole) run(ctx context.Context) error {
	a := r.first
	r.first = nil
	if a == nil {
		var err error
		if a, err = r.open(); err != nil {
			return err
		}
	}
	defer a.close()
	rn, err := exporters.New(exporters.Config{Source: r.src, State: a.state, Sinks: a.specs, Logger: r.logger, Registerer: a.reg})
	if err != nil {
		closeSinks(a.specs)
		return err
	}
	r.logger.Info("exporters started", "state", r.dir, "sinks", len(a.specs))
	return rn.Run(ctx)
}

func (r *exportersRole) role() supervise.Role {
	return supervise.Role{Name: "exporters", Run: r.run}
}
