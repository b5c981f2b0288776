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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/proofline/proofline/ingest"
	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/api"
	"github.com/proofline/proofline/internal/attest"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/metrics"
	"github.com/proofline/proofline/internal/ratelimit"
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
	maxRecords                            int
	publicLog                             bool
	batchAge, checkpointInterval          time.Duration
	debugListen, metricsListen            string
	clickhouseDSN, chdbLib, chCluster     string
	retentionDays                         int
	costCap                               float64
	costCurrency                          string
	costAnomalyFactor                     float64
	sloFile                               string
	witness                               witnessFlags
	archive                               archiveFlags
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
	fs.StringVar(&f.natsAuth.CredsFile, "nats-creds", "", "credentials file (user JWT and nkey seed) for the external NATS (--nats)")
	fs.StringVar(&f.natsAuth.NKeyFile, "nats-nkey", "", "file holding a user nkey seed for the external NATS (--nats)")
	fs.StringVar(&f.natsAuth.TokenFile, "nats-token-file", "", "file holding a token for the external NATS (--nats)")
	fs.StringVar(&f.natsAuth.CAFile, "nats-ca", "", "PEM roots to verify the external NATS servers' certificates; makes TLS mandatory")
	fs.StringVar(&f.natsAuth.CertFile, "nats-cert", "", "client certificate (PEM) for mutual TLS with the external NATS")
	fs.StringVar(&f.natsAuth.KeyFile, "nats-key", "", "key of --nats-cert (PEM)")
	fs.BoolVar(&f.natsSyncAlways, "nats-sync-always", false, "fsync every JetStream write of the embedded server (survives power loss, slower)")
	fs.IntVar(&f.natsReplicas, "nats-replicas", 1, "stream replicas on an external cluster")
	fs.DurationVar(&f.dedupWindow, "dedup-window", 10*time.Minute, "JetStream duplicate window for record ids")
	fs.DurationVar(&f.streamMaxAge, "stream-max-age", 0, "drop records older than this from the stream even if the signer has not logged them (0: never, a record leaves the stream once every consumer has it; 7 days on nats-server older than 2.10.29)")
	fs.Float64Var(&f.rate, "rate", 20000, "records per second allowed per principal (0 = unlimited)")
	fs.IntVar(&f.burst, "burst", 20000, "records a principal may send at once above its rate")
	fs.Int64Var(&f.maxBody, "max-body", ingest.DefaultConfig.MaxBodyBytes, "largest request body in bytes, before and after decompression")
	fs.IntVar(&f.maxRecords, "max-records", ingest.DefaultConfig.MaxRecords, "most records in one request")
	fs.BoolVar(&f.publicLog, "public-log", false, "serve /checkpoint and /tile/ without a token (as a public transparency log)")
	fs.DurationVar(&f.batchAge, "batch-age", 20*time.Millisecond, "longest a record waits to be sequenced into the log")
	fs.DurationVar(&f.checkpointInterval, "checkpoint-interval", 200*time.Millisecond, "how often a new checkpoint is signed and published (min 100ms)")
	fs.StringVar(&f.clickhouseDSN, "clickhouse", "", "ClickHouse DSN for the span store (clickhouse://user:pass@host:9000/db or https://...); empty runs the engine embedded through chDB")
	fs.StringVar(&f.chdbLib, "chdb-lib", "", "libchdb.so for the embedded engine (default $CHDB_LIB_PATH, then /usr/local/lib/chdb/libchdb.so)")
	fs.IntVar(&f.retentionDays, "retention-days", 90, "span retention (ClickHouse TTL) in days")
	fs.StringVar(&f.chCluster, "clickhouse-cluster", "", "ClickHouse cluster name: DDL runs ON CLUSTER with replicated tables, reads and writes go through the Distributed spans_all")
	fs.Float64Var(&f.costCap, "cost-monthly-cap", 0, "monthly cost cap the cost KPI projects against (0: none)")
	fs.StringVar(&f.costCurrency, "cost-currency", "USD", "currency of the cost KPI (records in other currencies are left out)")
	fs.Float64Var(&f.costAnomalyFactor, "cost-anomaly-factor", 3, "flag a tool whose last-hour cost per call exceeds this multiple of its 7-day baseline")
	fs.StringVar(&f.sloFile, "slo", "", "YAML file of SLOs per tool group for the error budget KPI")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on this address (its own port: keep it private); off by default")
	fs.StringVar(&f.debugListen, "debug-listen", "", "serve Go pprof on this address (keep it on loopback); off by default")
	f.witness.register(fs)
	f.archive.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	// tessera logs through klog; keep the process's logs one JSON stream.
	klog.SetSlogLogger(logger.With("component", "tessera"))
	roles, err := parseRoles(f.roles)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if f.natsListenCert != "" || f.natsListenKey != "" {
		switch {
		case f.natsListen == "" || f.natsURL != "":
			return fmt.Errorf("%w: --nats-listen-cert and --nats-listen-key are for the embedded NATS exposed with --nats-listen", errUsage)
		case f.natsListenCert == "" || f.natsListenKey == "":
			return fmt.Errorf("%w: --nats-listen-cert and --nats-listen-key go together", errUsage)
		}
	}
	if !f.natsAuth.IsZero() {
		if f.natsURL == "" {
			return fmt.Errorf("%w: --nats-creds, --nats-nkey, --nats-token-file, --nats-ca, --nats-cert and --nats-key are for an external NATS (--nats URL)", errUsage)
		}
		if err := f.natsAuth.Validate(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	return serve(ctx, f, roles, logger)
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
	// The span writer takes each row's evidence pointer from the log's
	// record index, which lives with the signer.
	if r["spanstore"] && !r["signer"] {
		return nil, fmt.Errorf("the spanstore role needs the signer role in the same process")
	}
	return r, nil
}

func serve(ctx context.Context, f serveFlags, roles roleSet, logger *slog.Logger) error {
	// Configuration files are checked before any engine starts.
	witnesses, err := f.witness.config(roles)
	if err != nil {
		return err
	}
	if err := f.archive.validate(roles); err != nil {
		return err
	}
	var slos []spanstore.SLO
	if f.sloFile != "" {
		var err error
		if slos, err = spanstore.LoadSLOs(f.sloFile); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
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
	var natsTok string
	if f.natsListen != "" && f.natsURL == "" {
		if natsTok, err = natsToken(f.data); err != nil {
			return fmt.Errorf("nats token: %w", err)
		}
	}
	b, err := bus.Open(ctx, bus.Config{
		URL: f.natsURL, Auth: f.natsAuth, DataDir: f.data, Listen: f.natsListen, Token: natsTok, SyncAlways: f.natsSyncAlways,
		ListenCertFile: f.natsListenCert, ListenKeyFile: f.natsListenKey,
		Replicas: f.natsReplicas, DuplicateWindow: f.dedupWindow, MaxAge: f.streamMaxAge, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer b.Close()
	if u := b.ClientURL(); u != "" {
		logger.Info("embedded nats listening", "url", u, "token_file", filepath.Join(keysDir(f.data), natsTokenFile))
	}

	// The log lives with the signer; the read API needs it too, so the
	// ingest-only role runs without proofs.
	var lg *ledger.Log
	if roles["signer"] {
		lg, err = ledger.Open(ctx, ledger.Config{
			Dir: f.data, Signer: logSigner, Verifier: logVerifier,
			BatchMaxAge: f.batchAge, CheckpointInterval: f.checkpointInterval, Logger: logger,
			Witnesses: witnesses,
		})
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
	}

	// Opened before the workers' defer below, so it is closed after the
	// span writer has stopped.
	var spans *spanstore.Store
	if roles["spanstore"] {
		spans, err = spanstore.Open(ctx, spanstore.Config{
			DSN: f.clickhouseDSN, DataDir: f.data, ChDBLib: f.chdbLib, RetentionDays: f.retentionDays, Cluster: f.chCluster, Logger: logger,
		})
		if err != nil {
			return fmt.Errorf("span store: %w", err)
		}
		defer spans.Close()
		if err := spans.Migrate(ctx); err != nil {
			return fmt.Errorf("span store: %w", err)
		}
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

	var wg sync.WaitGroup
	runCtx, cancelRun := context.WithCancel(ctx)
	defer func() { cancelRun(); wg.Wait() }()
	if roles["signer"] {
		s := signer.New(signer.Config{Attestation: attestKey, Metrics: signerMet}, b, lg, logger)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(runCtx); err != nil {
				logger.Error("signer stopped", "err", err)
			}
		}()
	}

	if f.archive.dir != "" {
		a := &archiver{flags: f.archive, logDir: lg.TilesDir(), v: logVerifier, vkey: []byte(vkey + "\n"), logger: logger}
		if witnesses != nil {
			a.policy = witnesses.Policy
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.run(runCtx) }()
	}

	if spans != nil {
		w := spanstore.NewWriter(spanstore.WriterConfig{}, b, spans, lg, logger)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(runCtx); err != nil {
				logger.Error("span writer stopped", "err", err)
			}
		}()
	}

	var ingestHandler http.Handler
	if roles["ingest"] {
		var inLog ingest.InLog
		if lg != nil {
			inLog = lg.LookupMany
		}
		ingestHandler = ingest.NewHandler(ingest.Config{MaxBodyBytes: f.maxBody, MaxRecords: f.maxRecords, Metrics: ingestMet},
			publish.NewPublisher(b.JS).WithAttestation(attestKey), inLog, ratelimit.New(f.rate, f.burst), logger)
	}
	mux := api.NewMux(api.Deps{
		Tokens: tokens, Ingest: ingestHandler, Log: lg, Bus: b, Spans: spans,
		Cost:        spanstore.CostConfig{Currency: f.costCurrency, MonthlyCap: f.costCap, AnomalyFactor: f.costAnomalyFactor},
		SLOs:        slos,
		VerifierKey: vkey, PublicLog: f.publicLog, Logger: logger,
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
		go serveMetrics(mln, met, logger)
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
	logger.Info("proofline serving", "listen", ln.Addr().String(), "data", f.data, "roles", f.roles, "origin", logVerifier.Name())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// serveMetrics serves /metrics on its own listener: Prometheus scrapes
// without proofline's short-lived tokens, so the port is kept apart from
// the API and left to the network to protect, as is usual.
func serveMetrics(ln net.Listener, met *metrics.Registry, logger *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", met.Handler())
	logger.Info("metrics server", "listen", ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		logger.Error("metrics server", "err", err)
	}
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
