package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/config"
	"github.com/proofline/proofline/ledger/notesig"
)

// cmdExport runs and inspects exporters: `export run` follows a log and
// delivers it to the sinks of an exporters file; status, replay and
// deadletters read and steer the state directory it keeps.
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 {
		return exitUsage, fmt.Errorf("%w: export run|status|replay|deadletters", errUsage)
	}
	switch args[0] {
	case "run":
		return exitOK, exportRun(ctx, args[1:], stderr)
	case "status":
		return exportStatus(ctx, args[1:], stdout, stderr)
	case "replay":
		return exitOK, exportReplay(ctx, args[1:], stdout, stderr)
	case "deadletters":
		return exitOK, exportDeadLetters(ctx, args[1:], stdout, stderr)
	default:
		return exitUsage, fmt.Errorf("%w: unknown export command %q", errUsage, args[0])
	}
}

// logFlags are how an export command reaches a log: a local data dir, or
// any proofline's HTTP API.
type logFlags struct {
	data, logURL, key, token string
}

func (l *logFlags) register(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&l.data, "data", "", "data directory of a local proofline (reads DATA/log, key DATA/keys/log.pub)")
	fs.StringVar(&l.logURL, "log", "", "base URL of a proofline serving /checkpoint and /tile/ (instead of --data)")
	fs.StringVar(&l.key, "key", "", "the log's verifier key (default with --data: DATA/keys/log.pub)")
	fs.StringVar(&l.token, "token", os.Getenv("PROOFLINE_TOKEN"), "with --log: query token (or PROOFLINE_TOKEN)")
}

func (l *logFlags) source() (*exporters.Source, error) {
	if (l.data == "") == (l.logURL == "") {
		return nil, fmt.Errorf("%w: give exactly one of --data or --log", errUsage)
	}
	key := l.key
	if key == "" && l.data != "" {
		key = filepath.Join(l.data, "keys", "log.pub")
	}
	if key == "" {
		return nil, fmt.Errorf("%w: --log needs --key", errUsage)
	}
	v, err := notesig.LoadVerifier(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if l.data != "" {
		return exporters.NewFileSource(filepath.Join(l.data, "log"), v), nil
	}
	src, err := exporters.NewHTTPSource(l.logURL, l.token, &http.Client{Timeout: time.Minute}, v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return src, nil
}

// stateDir is the exporters file's state_dir, else DATA/exporters.
func stateDir(explicit, data string, f *config.File) (string, error) {
	switch {
	case explicit != "":
		return explicit, nil
	case f != nil && f.StateDir != "":
		return f.StateDir, nil
	case data != "":
		return filepath.Join(data, "exporters"), nil
	}
	return "", fmt.Errorf("%w: give --state (or state_dir in the exporters file, or --data)", errUsage)
}

func exportRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("export run", stderr)
	var lf logFlags
	lf.register(fs)
	file := fs.String("exporters", "", "the exporters file (YAML): sinks, routing, egress allow list")
	var sf stateFlags
	sf.register(fs, true)
	poll := fs.Duration("poll", time.Second, "how often the log's checkpoint is read")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus metrics at /metrics on this address")
	logLevel := fs.String("log-level", "info", "debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: --exporters FILE is required", errUsage)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	f, err := config.Load(*file)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	src, err := lf.source()
	if err != nil {
		return err
	}
	if err := sf.checkUsage(); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f.Version = version
	if *metricsListen != "" {
		f.Registerer = reg
	}
	specs, err := f.Build()
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	st, where, closeState, err := sf.openRun(ctx, lf.data, f)
	if err != nil {
		return err
	}
	defer closeState()
	r, err := exporters.New(exporters.Config{Source: src, State: st, Sinks: specs, PollInterval: *poll, Logger: logger, Registerer: reg})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *metricsListen != "" {
		ln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w", *metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		logger.Info("metrics listening", "addr", ln.Addr().String())
	}
	logger.Info("exporter started", "log_origin", src.Origin(), "state", where, "sinks", len(specs))
	if err := r.Run(ctx); err != nil {
		return err
	}
	logger.Info("exporter stopped")
	return nil
}

// exportStatus prints each sink's position; with --verify it also reads the
// log's newest checkpoint and says, per sink, whether every leaf up to it
// was delivered or dead-lettered (exit 1 when a sink is behind).
func exportStatus(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("export status", stderr)
	var lf logFlags
	lf.register(fs)
	var sf stateFlags
	sf.register(fs, false)
	verifyFlag := fs.Bool("verify", false, "check every sink's delivery against the log's newest signed checkpoint (needs --data or --log)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return exitUsage, err
	}
	view, where, closeState, err := sf.openView(ctx, lf.data)
	if err != nil {
		return exitUsage, err
	}
	defer closeState()
	names, err := view.Sinks()
	if err != nil {
		return exitUsage, err
	}
	if len(names) == 0 {
		return exitUsage, fmt.Errorf("no exporter state in %s", where)
	}
	type row struct {
		exporters.Status
		CursorOnDisk uint64 `json:"cursor_on_disk"`
		Complete     *bool  `json:"complete,omitempty"`
	}
	var rows []row
	var anchor *exporters.Anchor
	if *verifyFlag {
		src, err := lf.source()
		if err != nil {
			return exitUsage, err
		}
		trusted, err := view.LoadTrusted()
		if err != nil {
			return exitUsage, err
		}
		anchor, err = src.Latest(ctx, trusted)
		if err != nil {
			if errors.Is(err, exporters.ErrInconsistent) {
				fmt.Fprintf(stdout, "FAILED: %v\n", err)
				return exitMismatch, nil
			}
			return exitUsage, err
		}
	}
	code := exitOK
	for _, sink := range names {
		c, err := view.LoadCursor(sink)
		if err != nil {
			return exitUsage, err
		}
		st, _ := view.LoadStatus(sink)
		st.Sink = sink
		r := row{Status: st, CursorOnDisk: c.Next}
		if anchor != nil {
			ok := c.Next >= anchor.TreeSize
			r.Complete = &ok
			r.TreeSize = anchor.TreeSize
			r.LagLeaves = 0
			if anchor.TreeSize > c.Next {
				r.LagLeaves = anchor.TreeSize - c.Next
				code = exitMismatch
			}
		}
		rows = append(rows, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return code, enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SINK\tcursor\ttree size\tlag leaves\tlag s\tbreaker\tdelivered\tdead-lettered\tlast error\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%s\t%d\t%d\t%s\t\n", r.Sink, r.CursorOnDisk, r.TreeSize, r.LagLeaves, r.LagSeconds,
			r.Breaker, r.Delivered, r.DeadLettered, r.LastError)
	}
	tw.Flush()
	if anchor != nil {
		for _, r := range rows {
			if *r.Complete {
				fmt.Fprintf(stdout, "OK: %s: every leaf below %d of %s was delivered or dead-lettered (%d dead letters)\n", r.Sink, anchor.TreeSize, anchor.Origin, r.DeadLettered)
			} else {
				fmt.Fprintf(stdout, "BEHIND: %s: leaves %d..%d of %s not delivered yet\n", r.Sink, r.CursorOnDisk, anchor.TreeSize-1, anchor.Origin)
			}
		}
	}
	return code, nil
}

func exportReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export replay", stderr)
	var sf stateFlags
	sf.register(fs, false)
	data := fs.String("data", "", "data directory (state in DATA/exporters)")
	sink := fs.String("sink", "", "the sink to replay")
	from := fs.Uint64("from", 0, "leaf index to deliver again from")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sink == "" {
		return fmt.Errorf("%w: --sink is required", errUsage)
	}
	view, _, closeState, err := sf.openView(ctx, *data)
	if err != nil {
		return err
	}
	defer closeState()
	if err := view.RequestReplay(*sink, *from); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replay of %s from leaf %d requested; the exporter applies it at its next step (or when it starts)\n", *sink, *from)
	return nil
}

func exportDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export deadletters", stderr)
	var sf stateFlags
	sf.register(fs, false)
	data := fs.String("data", "", "data directory (state in DATA/exporters)")
	sink := fs.String("sink", "", "the sink")
	asJSON := fs.Bool("json", false, "print NDJSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *sink == "" {
		return fmt.Errorf("%w: --sink is required", errUsage)
	}
	view, _, closeState, err := sf.openView(ctx, *data)
	if err != nil {
		return err
	}
	defer closeState()
	dls, err := view.DeadLetters(*sink)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range dls {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tLEAF\tRECORD ID\tREASON")
	for _, d := range dls {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", d.Time.Format(time.RFC3339), d.LeafIndex, d.RecordID, d.Reason)
	}
	return tw.Flush()
}
