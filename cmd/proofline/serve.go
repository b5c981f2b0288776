package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/klog/v2"

	"github.com/proofline/proofline/exporters/config"
	"github.com/proofline/proofline/ingest"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/api"
	"github.com/proofline/proofline/internal/attest"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/health"
	"github.com/proofline/proofline/internal/metrics"
	"github.com/proofline/proofline/internal/ratelimit"
	"github.com/proofline/proofline/internal/supervise"
	"github.com/proofline/proofline/ledger"
	"github.com/proofline/proofline/query/spanstore"
	"github.com/proofline/proofline/signer"
)

type serveFlags struct {
	data, listen, origin, roles, logLevel string
	natsURL, natsListen                   string
	natsListenCert, natsListenKey         string
	natsAuth                              bus.ClientAuth
	natsSyncAlways                        bool
	natsReplicas                          int
	dedupWindow, streamMaxAge             time.Duration
	rate                                  float64
	burst                                 int
	maxBody                               int64
	decodeBudget                          int64
	maxRecords                            int
	publicLog                             bool
	batchAge, checkpointInterval          time.Duration
	auditInterval                         time.Duration
	auditEvery                            uint64
	debugListen, metricsListen            string
	clickhouseDSN, chdbLib, chCluster     string
	retentionDays                         int
	costCap                               float64
	costCurrency                          string
	costAnomalyFactor                     float64
	costNewToolCapShare                   float64
	sloFile                               string
	planSealEvery                         time.Duration
	planMaxDuration                       time.Duration
	witness                               witnessFlags
	archive                               archiveFlags
	exporters                             exportersFlag
}

func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	var f serveFlags
	fs := newFlagSet("serve", stderr)
	fs.StringVar(&f.data, "data", "./proofline-data", "data directory (keys, JetStream store, Merkle log)")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:7600", "HTTP listen address")
	fs.StringVar(&f.origin, "origin", "", "log origin for a new log (default proofline.local/HOSTNAME); must match an existing key")
	fs.StringVar(&f.roles, "roles", "all", "comma-separated roles to run: ingest, signer, spanstore (all = every role)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.natsURL, "nats", "", "external NATS URL(s), comma-separated; empty runs NATS embedded with JetStream under --data")
	fs.StringVar(&f.natsListen, "nats-listen", "", "expose the embedded NATS on host:port for other producers (default: in-process only)")
	fs.StringVar(&f.natsListenCert, "nats-listen-cert", "", "certificate (PEM) that makes --nats-listen TLS only")
	fs.StringVar(&f.natsListenKey, "nats-listen-key", "", "key of --nats-listen-cert (PEM)")
	registerNATSAuth(fs, &f.natsAuth)
	fs.BoolVar(&f.natsSyncAlways, "nats-sync-always", false, "fsync every JetStream write of the embedded server (survives power loss, slower)")
	fs.IntVar(&f.natsReplicas, "nats-replicas", 1, "stream replicas on an external cluster")
	fs.DurationVar(&f.dedupWindow, "dedup-window", 10*time.Minute, "JetStream duplicate window for record ids")
	fs.DurationVar(&f.streamMaxAge, "stream-max-age", 0, "drop records older than this from the stream even if the signer has not logged them (0: never, a record leaves the stream once every consumer has it; 7 days on nats-server older than 2.10.29)")
	fs.Float64Var(&f.rate, "rate", 20000, "records per second allowed per principal (0 = unlimited)")
	fs.IntVar(&f.burst, "burst", 20000, "records a principal may send at once above its rate")
	fs.Int64Var(&f.maxBody, "max-body", ingest.DefaultConfig.MaxBodyBytes, "largest request body in bytes, before and after decompression")
	fs.Int64Var(&f.decodeBudget, "decode-budget", 0, "bytes all requests together may hold while decompressing and decoding bodies; over it a request waits briefly, then gets 503 (0: an eighth of the memory limit or physical memory, at most 2 GiB, at least 64 MiB)")
	fs.IntVar(&f.maxRecords, "max-records", ingest.DefaultConfig.MaxRecords, "most records in one request")
	fs.BoolVar(&f.publicLog, "public-log", false, "serve /checkpoint and /tile/ without a token (as a public transparency log)")
	fs.DurationVar(&f.batchAge, "batch-age", 60*time.Millisecond, "longest a record waits to be sequenced into the log (under load a batch is cut by this age: longer makes fewer, larger batches for the log's one writer)")
	fs.DurationVar(&f.checkpointInterval, "checkpoint-interval", 200*time.Millisecond, "how often a new checkpoint is signed and published (min 100ms)")
	fs.DurationVar(&f.auditInterval, "audit-interval", ledger.DefaultAuditInterval, "how often the log re-derives its newest entries and tiles against its signed checkpoint (negative: only at start and every --audit-every appends)")
	fs.Uint64Var(&f.auditEvery, "audit-every", ledger.DefaultAuditEvery, "also audit the log after this many appended records")
	fs.StringVar(&f.clickhouseDSN, "clickhouse", "", "ClickHouse DSN for the span store (clickhouse://user:pass@host:9000/db or https://...); empty runs the engine embedded through chDB")
	fs.StringVar(&f.chdbLib, "chdb-lib", "", "libchdb.so for the embedded engine (default $CHDB_LIB_PATH, then /usr/local/lib/chdb/libchdb.so)")
	fs.IntVar(&f.retentionDays, "retention-days", 90, "span retention (ClickHouse TTL) in days")
	fs.StringVar(&f.chCluster, "clickhouse-cluster", "", "ClickHouse cluster name: DDL runs ON CLUSTER with replicated tables, reads and writes go through the Distributed spans_all")
	fs.Float64Var(&f.costCap, "cost-monthly-cap", 0, "monthly cost cap the cost KPI projects against (0: none)")
	fs.StringVar(&f.costCurrency, "cost-currency", "USD", "currency of the cost KPI (records in other currencies are left out)")
	fs.Float64Var(&f.costAnomalyFactor, "cost-anomaly-factor", 3, "flag a tool whose last-hour cost per call exceeds this multiple of its 7-day baseline (its group's for a new tool)")
	fs.Float64Var(&f.costNewToolCapShare, "cost-new-tool-cap-share", 0.1, "flag a tool with no 7-day baseline whose last hour spent more than this share of --cost-monthly-cap")
	fs.StringVar(&f.sloFile, "slo", "", "YAML file of SLOs per tool group for the error budget KPI")
	fs.DurationVar(&f.planSealEvery, "plan-seal-every", time.Minute, "how often the span store seals the plans of finished hours for the plans KPI")
	fs.DurationVar(&f.planMaxDuration, "plan-max-duration", spanstore.DefaultPlanMaxDuration, "the longest a plan (calls sharing a plan_id) is taken to last, in whole hours (1h to 168h): the plans KPI groups that much and another 0.5-1.5 hours of plans at each query, and counts the calls of a longer plan wrongly")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on this address (its own port: keep it private); off by default")
	fs.StringVar(&f.debugListen, "debug-listen", "", "serve Go pprof on this address (keep it on loopback); off by default")
	f.witness.register(fs)
	f.archive.register(fs)
	f.exporters.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := f.configs(stderr)
	if err != nil {
		return err
	}
	// tessera logs through klog, and libraries without a logger option
	// through slog's default; keep the process's logs one JSON stream.
	klog.SetSlogLogger(c.logger.With("component", "tessera"))
	slog.SetDefault(c.logger)
	return serve(ctx, f, c)
}

// serveConfig is every role's configuration, built from the flags and
// validated before any engine starts.
type serveConfig struct {
	logger    *slog.Logger
	roles     roleSet
	slos      []spanstore.SLO
	bus       bus.Config
	ledger    ledger.Config
	signer    signer.Config
	ingest    ingest.Config
	spans     spanstore.Config
	supervise supervise.Config
	witnesses *ledger.WitnessConfig
	exporters *config.File
}

// configs builds the roles' configurations from the flags and checks
// them all, so that one start reports every mistake at once (each naming
// its flag) rather than one per attempt, and before anything is written.
func (f serveFlags) configs(stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	var errs []error
	var err error
	if c.logger, err = newLogger(stderr, f.logLevel); err != nil {
		errs = append(errs, err)
		c.logger = slog.New(slog.NewJSONHandler(stderr, nil))
	}
	if c.roles, err = parseRoles(f.roles); err != nil {
		errs = append(errs, fmt.Errorf("--roles: %w", err))
	}
	if (f.natsListenCert != "" || f.natsListenKey != "") && (f.natsListen == "" || f.natsURL != "") {
		errs = append(errs, errors.New("--nats-listen-cert and --nats-listen-key are for the embedded NATS exposed with --nats-listen"))
	}
	if !f.natsAuth.IsZero() && f.natsURL == "" {
		errs = append(errs, errors.New("--nats-creds, --nats-nkey, --nats-token-file, --nats-ca, --nats-cert and --nats-key are for an external NATS (--nats URL)"))
	}
	if f.sloFile != "" {
		if c.slos, err = spanstore.LoadSLOs(f.sloFile); err != nil {
			errs = append(errs, fmt.Errorf("--slo: %w", err))
		}
	}
	for _, a := range []struct{ flag, addr string }{{"--listen", f.listen}, {"--metrics-listen", f.metricsListen}, {"--debug-listen", f.debugListen}} {
		if a.addr == "" && a.flag != "--listen" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.flag, err))
		}
	}
	if f.rate < 0 {
		errs = append(errs, fmt.Errorf("--rate: %v is negative (0 disables the limit)", f.rate))
	}
	if f.burst < 0 {
		errs = append(errs, fmt.Errorf("--burst: %d is negative", f.burst))
	}
	if strings.TrimSpace(f.costCurrency) == "" {
		// Amounts without a currency are never counted as one (the cost
		// KPI reports them apart), so the KPI needs a currency to report.
		errs = append(errs, errors.New("--cost-currency: empty, want a currency code such as USD"))
	}
	if f.planSealEvery <= 0 {
		errs = append(errs, fmt.Errorf("--plan-seal-every: %v, want a positive duration", f.planSealEvery))
	}
	if f.costCap < 0 {
		errs = append(errs, fmt.Errorf("--cost-monthly-cap: %v is negative", f.costCap))
	}
	if f.costNewToolCapShare <= 0 || f.costNewToolCapShare > 1 {
		errs = append(errs, fmt.Errorf("--cost-new-tool-cap-share: %v, want a share in (0, 1]", f.costNewToolCapShare))
	}
	if f.costAnomalyFactor <= 0 {
		errs = append(errs, fmt.Errorf("--cost-anomaly-factor: %v, want a positive multiple", f.costAnomalyFactor))
	}

	c.bus = bus.Config{
		URL: f.natsURL, Auth: f.natsAuth, DataDir: f.data, Listen: f.natsListen, SyncAlways: f.natsSyncAlways,
		ListenCertFile: f.natsListenCert, ListenKeyFile: f.natsListenKey,
		Replicas: f.natsReplicas, DuplicateWindow: f.dedupWindow, MaxAge: f.streamMaxAge, Logger: c.logger,
	}
	errs = append(errs, flagged(c.bus.Validate(), map[string]string{
		"DataDir": "--data", "URL": "--nats", "Listen": "--nats-listen", "ListenCertFile": "--nats-listen-cert",
		"Auth":     "--nats-creds/--nats-nkey/--nats-token-file/--nats-ca/--nats-cert/--nats-key",
		"Replicas": "--nats-replicas", "DuplicateWindow": "--dedup-window", "MaxAge": "--stream-max-age",
	})...)
	c.ledger = ledger.Config{Dir: f.data, BatchMaxAge: f.batchAge, CheckpointInterval: f.checkpointInterval, Logger: c.logger,
		AuditInterval: f.auditInterval, AuditEvery: f.auditEvery}
	errs = append(errs, flagged(c.ledger.Validate(), map[string]string{
		"Dir": "--data", "BatchMaxAge": "--batch-age", "CheckpointInterval": "--checkpoint-interval",
	})...)
	errs = append(errs, flagged(c.signer.Validate(), nil)...)
	if f.decodeBudget == 0 {
		f.decodeBudget = ingest.DefaultDecodeBudget(ingest.MemoryLimit())
	}
	budget, err := ingest.NewBudget(f.decodeBudget, 0)
	if err != nil {
		errs = append(errs, fmt.Errorf("--decode-budget: %v", err))
	}
	c.ingest = ingest.Config{MaxBodyBytes: f.maxBody, MaxRecords: f.maxRecords, Budget: budget}
	errs = append(errs, flagged(c.ingest.Validate(), map[string]string{
		"MaxBodyBytes": "--max-body", "MaxRecords": "--max-records",
	})...)
	if c.roles == nil || c.roles["spanstore"] { // nil: --roles is wrong, check the rest anyway
		c.spans = spanstore.Config{
			DSN: f.clickhouseDSN, DataDir: f.data, ChDBLib: f.chdbLib, RetentionDays: f.retentionDays, Cluster: f.chCluster,
			PlanMaxDuration: f.planMaxDuration, Logger: c.logger,
		}
		if f.retentionDays == 0 {
			errs = append(errs, errors.New("--retention-days: 0, want 1 to 36500"))
		}
		if f.planMaxDuration == 0 {
			errs = append(errs, errors.New("--plan-max-duration: 0, want a whole number of hours from 1h to 168h"))
		}
		errs = append(errs, flagged(c.spans.Validate(), map[string]string{
			"DSN": "--clickhouse", "DataDir": "--data", "RetentionDays": "--retention-days", "Cluster": "--clickhouse-cluster",
			"PlanMaxDuration": "--plan-max-duration",
		})...)
	}
	if c.roles != nil {
		if c.witnesses, err = f.witness.config(c.roles); err != nil {
			errs = append(errs, err)
		}
		if err := f.archive.validate(c.roles); err != nil {
			errs = append(errs, err)
		}
		if c.exporters, err = f.exporters.load(c.roles, f.metricsListen); err != nil {
			errs = append(errs, err)
		}
	}
	c.supervise = supervise.Config{Logger: c.logger}
	errs = append(errs, flagged(c.supervise.Validate(), nil)...)
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("%w: %w", errUsage, err)
	}
	return c, nil
}

// flagged renames the "Field: ..." errors of a Validate to the flag that
// sets the field, so the user reads the name they typed.
func flagged(err error, flags map[string]string) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flagged(e, flags)...)
		}
		return out
	}
	if field, rest, ok := strings.Cut(err.Error(), ": "); ok {
		if name, known := flags[field]; known {
			return []error{fmt.Errorf("%s: %s", name, rest)}
		}
	}
	return []error{err}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %v", level, err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

type roleSet map[string]bool

func parseRoles(s string) (roleSet, error) {
	r := roleSet{}
	for _, p := range strings.Split(s, ",") {
		switch p = strings.TrimSpace(p); p {
		case "all":
			r["ingest"], r["signer"], r["spanstore"] = true, true, true
		case "ingest", "signer", "spanstore":
			r[p] = true
		default:
			return nil, fmt.Errorf("unknown role %q (want ingest, signer, spanstore or all)", p)
		}
	}
	// The span store follows the log from the signer's data directory.
	if r["spanstore"] && !r["signer"] {
		return nil, fmt.Errorf("the spanstore role needs the signer role in the same process")
	}
	return r, nil
}

func serve(ctx context.Context, f serveFlags, c serveConfig) error {
	logger, roles := c.logger, c.roles
	if err := privateDataDir(f.data, logger); err != nil {
		return err
	}
	logSigner, logVerifier, vkey, created, err := logKeys(f.data, f.origin)
	if err != nil {
		return err
	}
	logger.Info("log key", "origin", logVerifier.Name(), "verifier_key", vkey, "created", created)
	tokens, err := tokenKeys(f.data)
	if err != nil {
		return err
	}

	// Ingest attests the records it publishes; the signer trusts those
	// attestations and checks every other record in full (package attest).
	attestKey, err := attest.LoadOrCreate(filepath.Join(keysDir(f.data), attestKeyFile))
	if err != nil {
		return err
	}
	if f.natsListen != "" && f.natsURL == "" {
		if c.bus.Token, err = natsToken(f.data); err != nil {
			return fmt.Errorf("nats token: %w", err)
		}
	}
	b, err := bus.Open(ctx, c.bus)
	if err != nil {
		return err
	}
	defer b.Close()
	if u := b.ClientURL(); u != "" {
		logger.Info("embedded nats listening", "url", u, "token_file", filepath.Join(keysDir(f.data), natsTokenFile))
	}

	// /readyz is every check registered here: one line per part.
	checks := health.New()
	checks.Add("jetstream", b.Ready)
	sup := supervise.New(c.supervise)

	// The log lives with the signer; the read API needs it too, so the
	// ingest-only role runs without proofs.
	var lg *ledger.Log
	if roles["signer"] {
		lcfg := c.ledger
		lcfg.Signer, lcfg.Verifier = logSigner, logVerifier
		lcfg.Witnesses = c.witnesses
		lg, err = ledger.Open(ctx, lcfg)
		if err != nil {
			return err
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := lg.Close(cctx); err != nil {
				logger.Error("closing log", "err", err)
			}
		}()
		checks.Add("log", lg.Ready)
		checks.Add("log_integrity", func(context.Context) error { return lg.IntegrityErr() })
		if lg.Witnessed() {
			checks.Add("witness", lg.WitnessReady)
		}
	}

	// Opened before the supervisor runs, so it is closed after the span
	// writer has stopped. Open does not wait for a ClickHouse server: the
	// span role connects and migrates, and retries while it is down, so
	// that ingest and proofs run regardless.
	var spans *spanstore.Store
	if roles["spanstore"] {
		spans, err = spanstore.Open(ctx, c.spans)
		if err != nil {
			return fmt.Errorf("span store: %w", err)
		}
		defer spans.Close()
	}

	// Metrics exist only when served; the roles take nil parts otherwise.
	var met *metrics.Registry
	var ingestMet *metrics.Ingest
	var signerMet *metrics.Signer
	if f.metricsListen != "" {
		met = metrics.New()
		met.WatchStream(b)
		if lg != nil {
			met.WatchLog(lg)
			if lg.Witnessed() {
				met.WatchWitnesses(lg)
			}
		}
		ingestMet, signerMet = met.Ingest, met.Signer
	}

	if roles["signer"] {
		scfg := c.signer
		scfg.Attestation, scfg.Metrics = attestKey, signerMet
		sup.Add(supervise.Role{Name: "signer", Run: signer.New(scfg, b, lg, logger).Run})
	}

	if f.archive.dir != "" {
		a := &archiver{flags: f.archive, logDir: lg.TilesDir(), v: logVerifier, vkey: []byte(vkey + "\n"), logger: logger}
		if c.witnesses != nil {
			a.policy = c.witnesses.Policy
		}
		sup.Add(supervise.Role{Name: "archiver", Run: func(ctx context.Context) error { a.run(ctx); return nil }})
	}

	if c.exporters != nil {
		var js jetstream.JetStream
		if f.natsURL != "" {
			js = b.JS
		}
		ex, err := newExportersRole(ctx, c.exporters, f.data, js, f.natsReplicas, lg, logVerifier, met, logger)
		if err != nil {
			return err
		}
		sup.Add(ex.role())
	}

	if spans != nil {
		// The span store follows the log (spanRole); the JetStream
		// consumer the span writer of earlier versions read from would
		// hold every record in the stream (interest retention) for a
		// reader that no longer comes.
		if err := b.RemoveConsumer(ctx, bus.SpanConsumer); err != nil {
			return fmt.Errorf("span store: %w", err)
		}
		sup.Add(spanRole(spans, c.slos, f.planSealEvery, b, lg, logVerifier, f.data, met, logger))
	}

	var ingestHandler http.Handler
	var pendingPublishes func() int
	if roles["ingest"] {
		var inLog ingest.InLog
		if lg != nil {
			inLog = inLogOf(lg)
		}
		pub := publish.NewPublisher(b.JS)
		pendingPublishes = pub.Pending
		if met != nil {
			met.WatchPublisher(pub.Pending)
		}
		icfg := c.ingest
		icfg.Metrics = ingestMet
		logger.Info("ingest decode budget", "bytes", icfg.Budget.Size())
		ingestHandler = ingest.NewHandler(icfg, pub.WithAttestation(attestKey), inLog, ratelimit.New(f.rate, f.burst), logger)
	}
	if pendingPublishes != nil {
		// Above this a request of --max-records would stall.
		limit := max(bus.MaxPublishPending-f.maxRecords, bus.MaxPublishPending/2)
		checks.Add("publish_pending", func(context.Context) error {
			if n := pendingPublishes(); n >= limit {
				return fmt.Errorf("%d publishes await JetStream's acknowledgement (limit %d)", n, limit)
			}
			return nil
		})
	}
	mux := api.NewMux(api.Deps{
		Tokens: tokens, Ingest: ingestHandler, Log: lg, Bus: b, Spans: spans,
		Cost:        spanstore.CostConfig{Currency: f.costCurrency, MonthlyCap: f.costCap, AnomalyFactor: f.costAnomalyFactor, NewToolCapShare: f.costNewToolCapShare},
		SLOs:        c.slos,
		VerifierKey: vkey, PublicLog: f.publicLog, Checks: checks, Logger: logger,
	})
	if f.debugListen != "" {
		go serveDebug(f.debugListen, logger)
	}
	if met != nil {
		// Bound now, so a taken port fails the start instead of leaving
		// the server unmonitored.
		mln, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			return fmt.Errorf("metrics listen %s: %w", f.metricsListen, err)
		}
		sup.Add(supervise.Role{Name: "metrics", Run: func(ctx context.Context) error {
			if mln == nil { // a restart: bind again
				l, err := net.Listen("tcp", f.metricsListen)
				if err != nil {
					return err
				}
				mln = l
			}
			defer func() { mln = nil }()
			return serveMetrics(ctx, mln, met, logger)
		}})
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", f.listen, err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Without the HTTP server nothing else is reachable: its failure ends
	// the process (exit 2) rather than leaving it running deaf.
	sup.Add(supervise.Role{Name: "http", Critical: true, Run: func(ctx context.Context) error {
		return serveUntil(ctx, srv, ln)
	}})
	for _, name := range sup.Names() {
		checks.Add(name, sup.Check(name))
	}
	consoleURL := "" // the console needs the log or the span store behind it
	if lg != nil || spans != nil {
		consoleURL = "http://" + ln.Addr().String() + "/ui/"
	}
	logger.Info("proofline serving", "listen", ln.Addr().String(), "data", f.data, "roles", f.roles, "origin", logVerifier.Name(), "console", consoleURL)
	err = sup.Run(ctx)
	logger.Info("shutting down")
	return err
}

// serveUntil serves srv on ln until ctx ends, then shuts it down, letting
// requests in flight finish.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	return err
}

// serveMetrics serves /metrics on its own listener: Prometheus scrapes
// without proofline's short-lived tokens, so the port is kept apart from
// the API and left to the network to protect, as is usual.
func serveMetrics(ctx context.Context, ln net.Listener, met *metrics.Registry, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", met.Handler())
	logger.Info("metrics server", "listen", ln.Addr().String())
	return serveUntil(ctx, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln)
}

// serveDebug serves pprof on its own listener, so profiling is never
// reachable through the API port.
func serveDebug(addr string, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	logger.Info("debug server", "listen", addr)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		logger.Error("debug server", "err", err)
	}
}

// inLogOf lets ingest ask the log about the ids it is given: the same
// record again is a duplicate, a different one under a held id a conflict.
func inLogOf(lg *ledger.Log) ingest.InLog {
	return func(ctx context.Context, msgs []publish.Message) (map[int]ingest.Held, error) {
		entries := make([]ledger.Entry, len(msgs))
		for i, m := range msgs {
			entries[i] = ledger.Entry{ID: m.RecordID, Data: m.Data}
		}
		found, err := lg.Check(ctx, entries)
		if err != nil {
			return nil, err
		}
		out := make(map[int]ingest.Held, len(found))
		for i, a := range found {
			out[i] = ingest.Held{Conflict: a.Conflict, Leaf: a.Index, LeafKnown: !a.HolderUnknown}
		}
		return out, nil
	}
}
