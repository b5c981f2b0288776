package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/config"
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
	src    *exporters.Source
	met    *metrics.Registry
	logger *slog.Logger

	first *exportersAttempt
}

type exportersAttempt struct {
	specs []exporters.SinkSpec
	state *exporters.StateDir
	reg   prometheus.Registerer
}

func newExportersRole(f *config.File, data string, lg *ledger.Log, v note.Verifier, met *metrics.Registry, logger *slog.Logger) (*exportersRole, error) {
	dir, err := stateDir("", data, f)
	if err != nil {
		return nil, err
	}
	r := &exportersRole{file: f, dir: dir, src: exporters.NewFileSource(lg.TilesDir(), v), met: met, logger: logger.With("role", "exporters")}
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
	st, err := exporters.OpenStateDir(r.dir)
	if err != nil {
		closeSinks(specs)
		return nil, err
	}
	a.specs, a.state = specs, st
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
	defer a.state.Close()
	rn, err := exporters.New(exporters.Config{Source: r.src, State: a.state, Sinks: a.specs, Logger: r.logger, Registerer: a.reg})
	if err != nil {
		closeSinks(a.specs)
		return err
	}
	r.logger.Info("exporters started", "state_dir", r.dir, "sinks", len(a.specs))
	return rn.Run(ctx)
}

func (r *exportersRole) role() supervise.Role {
	return supervise.Role{Name: "exporters", Run: r.run}
}
