// Package bus owns proofline's connection to NATS JetStream: the embedded
// server used by default, the connection to an external cluster, and the
// stream and consumer definitions every role shares.
//
// Definitions live in one place so that ingest, the signer and later
// consumers agree on names and limits, and so that they are created
// idempotently at start whichever role comes up first.
package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/ingest/publish"
)

const (
	// StreamName is the JetStream stream holding every call record.
	StreamName = publish.Stream
	// SubjectRecords is the subject call records are published on.
	SubjectRecords = publish.Subject
	// SignerConsumer is the durable consumer the signer reads from.
	SignerConsumer = "signer"
	// SpanConsumer names the span store's dead letters. It was also the
	// durable consumer the span writer of earlier versions read from;
	// the span store now follows the log, and serve removes it.
	SpanConsumer = "spanstore"
	// DeadLetterStream keeps messages a consumer could never process, with
	// the reason in a header, so that one poison message cannot block a
	// consumer and is not silently dropped either.
	DeadLetterStream = "DEADLETTER"
	// SubjectDeadLetterPrefix is followed by the consumer's name.
	SubjectDeadLetterPrefix = "proofline.deadletter."
	// HeaderDeadLetterReason carries why a message was dead-lettered.
	HeaderDeadLetterReason = "Proofline-Error"
)

// Config says where JetStream is and how the stream is shaped.
type Config struct {
	// URL of an external NATS server or cluster. Empty runs an embedded
	// server with its JetStream store under DataDir.
	URL string
	// DataDir holds the embedded server's JetStream store.
	DataDir string
	// Listen, when set (host:port), exposes the embedded server to other
	// processes such as the MCP hook or the collector; otherwise it accepts
	// in-process connections only.
	Listen string
	// ListenCertFile and ListenKeyFile, when set, make the Listen port
	// TLS only, with this certificate: the token producers present on it
	// is then not readable on the wire. In-process connections are not
	// affected.
	ListenCertFile, ListenKeyFile string
	// Token, when set, is required of every client of the embedded server.
	// Exposing the embedded server without it would let anyone who
	// reaches the port write records.
	Token string
	// Auth is proofline's credentials and TLS settings for an external
	// server (URL set); the embedded server does not use them.
	Auth ClientAuth
	// SyncAlways makes the embedded server fsync every write. Without it a
	// killed process loses nothing (the page cache survives), but a power
	// loss may lose the last seconds.
	SyncAlways bool
	// Replicas for the stream on a cluster; 1 for the embedded server.
	Replicas int
	// DuplicateWindow is JetStream's Nats-Msg-Id deduplication window. The
	// ledger deduplicates by record id forever; this window makes retried
	// HTTP posts report "duplicate" without reaching the signer at all.
	DuplicateWindow time.Duration
	// MaxAge, when set, drops records older than it from the stream even
	// if a consumer has not had them. Zero (the default) keeps a record
	// until every consumer has acknowledged it, or for 7 days on a server
	// too old for that: see StreamConfig.
	MaxAge time.Duration
	// LapsedConsumer is how long a consumer other than the signer's may
	// go without reading before JetStream removes it (default 7 days),
	// so that a span writer no longer run does not hold records forever.
	LapsedConsumer time.Duration
	// PublishAckTimeout is how long an async publish waits for its
	// acknowledgement before the client gives it up and frees its slot
	// (default DefaultPublishAckTimeout, ingest's own publish timeout).
	// Without it a publish whose stream leader died before answering
	// stays pending for as long as the connection lives, and enough of
	// them stall every later publish (MaxPublishPending).
	PublishAckTimeout time.Duration
	// Logger receives connection events.
	Logger *slog.Logger
}

// MaxPublishPending is how many async publishes may await their
// acknowledgement at once; DefaultPublishAckTimeout how long each may.
const (
	MaxPublishPending        = 32768
	DefaultPublishAckTimeout = 10 * time.Second
)

// Bus is a live JetStream connection, with the embedded server if any.
type Bus struct {
	NC  *nats.Conn
	JS  jetstream.JetStream
	srv *server.Server
	cfg Config
	// interest is whether the stream retains by interest, which depends
	// on the server's version (interestRetentionSafe); decided at Open.
	interest, interestDecided bool
}

// Open starts the embedded server (when cfg.URL is empty) or connects to
// the external one, and ensures the stream exists with cfg's settings.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DuplicateWindow == 0 {
		cfg.DuplicateWindow = 10 * time.Minute
	}
	if cfg.LapsedConsumer == 0 {
		cfg.LapsedConsumer = 7 * 24 * time.Hour
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	b := &Bus{cfg: cfg}
	opts := []nats.Option{
		nats.Name("proofline"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: this process closed the connection
				cfg.Logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			cfg.Logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		// Asynchronous errors are how a server reports, for example, that
		// this account may not publish on the records subject.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				cfg.Logger.Warn("nats error", "subject", sub.Subject, "err", err)
				return
			}
			cfg.Logger.Warn("nats error", "err", err)
		}),
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}
	url := cfg.URL
	if url == "" {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		opts = append(opts, nats.InProcessServer(srv))
		// With a TLS listener the server's URL is tls://, which would make
		// this client insist on TLS over its in-memory pipe; the server
		// exempts in-process clients from TLS, and so does this one.
		url = strings.Replace(srv.ClientURL(), "tls://", "nats://", 1)
	} else {
		if !cfg.Auth.IsZero() && cfg.Token != "" {
			return nil, errors.New("nats: give either a token or client credentials, not both")
		}
		auth, err := cfg.Auth.Options()
		if err != nil {
			return nil, err
		}
		// An external server may be down at start: keep trying rather than
		// failing the whole process, as a restart of NATS is routine. An
		// auth error mid-run is retried too (nats.go gives up on the second
		// by default): a cluster rolling out account changes can refuse a
		// client for a moment, and a closed connection would turn ingest
		// off until proofline is restarted. At start, ensureStream stops
		// at the first refusal instead (see refused).
		opts = append(opts, nats.RetryOnFailedConnect(true), nats.IgnoreAuthErrorAbort())
		opts = append(opts, auth...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	b.NC = nc
	// Ingest awaits a whole batch of async publishes; allow a full request
	// (10,000 records by default) in flight without stalling.
	ackTimeout := cfg.PublishAckTimeout
	if ackTimeout <= 0 {
		ackTimeout = DefaultPublishAckTimeout
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(MaxPublishPending), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b.JS = js
	if err := b.ensureStream(ctx); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.ensureConsumers(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func startEmbedded(cfg Config) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "proofline-embedded",
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "nats"),
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
		DontListen: cfg.Listen == "",
		Port:       -1,
		// Token auth applies to in-process clients too; proofline's own
		// connection presents it.
		Authorization: cfg.Token,
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address: %w", err)
		}
		opts.Host, opts.Port, opts.DontListen = host, port, false
	}
	if cfg.ListenCertFile != "" || cfg.ListenKeyFile != "" {
		if cfg.Listen == "" {
			return nil, errors.New("nats listen tls: a certificate is only for a listening embedded server")
		}
		cert, err := tls.LoadX509KeyPair(cfg.ListenCertFile, cfg.ListenKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats listen tls: %w", err)
		}
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		opts.TLS = true
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	return srv, nil
}

// StreamConfig is the CALLS stream definition.
//
// Retention is by interest: a record leaves the stream once every durable
// consumer (the signer's: the span store and exporters follow the log) has
// acknowledged it, and not before. Between its 202 and the log the stream
// holds the only copy of a record, so a limit that drops records nobody
// has consumed (an age, as this stream had before) would lose
// acknowledged evidence whenever the signer is down for longer than it.
// The stream stays as small as the consumers' backlog.
//
// On a server that does not keep interest-retained records reliably
// (interestRetentionSafe) the stream keeps every record for MaxAge
// instead, 7 days unless set, as proofline did before.
func (b *Bus) StreamConfig() jetstream.StreamConfig {
	c := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "proofline call records",
		Subjects:    []string{SubjectRecords},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.InterestPolicy,
		MaxAge:      b.cfg.MaxAge,
		Duplicates:  b.cfg.DuplicateWindow,
		Replicas:    b.cfg.Replicas,
		Discard:     jetstream.DiscardOld,
	}
	if !b.interest {
		c.Retention = jetstream.LimitsPolicy
		if c.MaxAge == 0 {
			c.MaxAge = legacyMaxAge
		}
	}
	return c
}

// DeadLetterConfig is the dead-letter stream definition.
func (b *Bus) DeadLetterConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "proofline messages no consumer could process",
		Subjects:    []string{SubjectDeadLetterPrefix + ">"},
		Storage:     jetstream.FileStorage,
		MaxAge:      30 * 24 * time.Hour,
		Replicas:    b.cfg.Replicas,
	}
}

func (b *Bus) ensureStream(ctx context.Context) error {
	// Retry for a while: an external server may be starting too, and
	// answers "no responders" until JetStream is up.
	var err error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		// The retention depends on the server's version, known once
		// connected; a request made before would be sent on connecting,
		// with a retention chosen blind.
		if !b.NC.IsConnected() {
			err = errors.New("nats: not connected yet")
		} else {
			if !b.interestDecided {
				b.decideRetention(b.NC.ConnectedServerVersion())
			}
			_, err = b.JS.CreateOrUpdateStream(ctx, b.StreamConfig())
		}
		if err == nil {
			_, err = b.JS.CreateOrUpdateStream(ctx, b.DeadLetterConfig())
		}
		if err == nil {
			return nil
		}
		if last := b.NC.LastError(); refused(last) {
			return fmt.Errorf("connect to nats: the server refused this client: %w", last)
		}
		// A definition JetStream rejects is rejected again: say why now.
		if invalidStreamConfig(err) {
			return fmt.Errorf("create stream %s: %w", StreamName, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create stream %s: %w", StreamName, errors.Join(err, ctx.Err()))
		case <-time.After(500 * time.Millisecond):
		}
	}
	if last := b.NC.LastError(); last != nil {
		err = errors.Join(err, last)
	}
	return fmt.Errorf("create stream %s: %w", StreamName, err)
}

// decideRetention picks the stream's retention for the server's version.
func (b *Bus) decideRetention(version string) {
	b.interest, b.interestDecided = interestRetentionSafe(version), true
	if !b.interest {
		b.cfg.Logger.Warn("this nats-server does not keep interest-retained records reliably across restarts: the stream keeps every record for a fixed age instead, and a signer down for longer loses the records it has not logged; use nats-server 2.10.29 or later",
			"server_version", version, "max_age", b.StreamConfig().MaxAge.String())
	}
}

// invalidStreamConfig reports whether JetStream answered that it will not
// take the stream's definition (as opposed to not answering yet).
func invalidStreamConfig(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeStreamInvalidConfig
}

// jsErrCodeStreamInvalidConfig is nats-server's JSStreamInvalidConfigF,
// which the client package does not name.
const jsErrCodeStreamInvalidConfig jetstream.ErrorCode = 10052

// Consumer creates (or updates) a durable pull consumer on the stream.
func (b *Bus) Consumer(ctx context.Context, name string, ackWait time.Duration, maxAckPending int) (jetstream.Consumer, error) {
	c, err := b.JS.CreateOrUpdateConsumer(ctx, StreamName, b.consumerConfig(name, ackWait, maxAckPending))
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	return c, nil
}

// consumerConfig is the definition of proofline's consumers. Only the
// signer's never lapses: with interest retention every durable consumer
// holds the records it has not acknowledged, and the log must get every
// record however long the signer is down. Any other consumer is removed
// by JetStream after LapsedConsumer without reading; if it comes back it
// starts from what the stream still holds (the log has every record).
func (b *Bus) consumerConfig(name string, ackWait time.Duration, maxAckPending int) jetstream.ConsumerConfig {
	c := jetstream.ConsumerConfig{
		Durable:       name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: SubjectRecords,
	}
	if name != SignerConsumer {
		c.InactiveThreshold = b.cfg.LapsedConsumer
	}
	return c
}

// ensureConsumers makes the signer's consumer exist before anything is
// published: a record stored while no consumer is interested in it is
// dropped at once under interest retention, and an ingest-only process
// may well start before any signer. It is created with default settings
// if missing and never changed here; the signer sets its own when it runs.
//
// It also gives a span writer's consumer made by an earlier version (which
// never lapsed) the lapse it now has, so that a span writer that is no
// longer run does not keep every record in the stream.
func (b *Bus) ensureConsumers(ctx context.Context) error {
	_, err := b.JS.Consumer(ctx, StreamName, SignerConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		_, err = b.JS.CreateConsumer(ctx, StreamName, b.consumerConfig(SignerConsumer, 15*time.Second, 32768))
		if errors.Is(err, jetstream.ErrConsumerExists) { // made meanwhile by another process
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", SignerConsumer, err)
	}
	c, err := b.JS.Consumer(ctx, StreamName, SpanConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", SpanConsumer, err)
	}
	if cfg := c.CachedInfo().Config; cfg.InactiveThreshold == 0 {
		cfg.InactiveThreshold = b.cfg.LapsedConsumer
		if _, err := b.JS.UpdateConsumer(ctx, StreamName, cfg); err != nil {
			return fmt.Errorf("consumer %s: %w", SpanConsumer, err)
		}
	}
	return nil
}

// RemoveConsumer deletes the durable consumer name, if it exists.
func (b *Bus) RemoveConsumer(ctx context.Context, name string) error {
	err := b.JS.DeleteConsumer(ctx, StreamName, name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("remove consumer %s: %w", name, err)
	}
	return nil
}

// DeadLetter stores msg on the dead-letter stream for consumer with the
// reason, and waits for JetStream to confirm it.
func (b *Bus) DeadLetter(ctx context.Context, consumer string, data []byte, reason error) error {
	m := &nats.Msg{Subject: SubjectDeadLetterPrefix + consumer, Data: data, Header: nats.Header{}}
	m.Header.Set(HeaderDeadLetterReason, reason.Error())
	if _, err := b.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	return nil
}

// Ready reports whether JetStream answers.
func (b *Bus) Ready(ctx context.Context) error {
	if b.NC == nil || !b.NC.IsConnected() {
		return errors.New("nats not connected")
	}
	if _, err := b.JS.Stream(ctx, StreamName); err != nil {
		return fmt.Errorf("stream %s: %w", StreamName, err)
	}
	return nil
}

// ClientURL is the embedded server's URL for other processes, or "" when
// it does not listen or an external server is used.
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.cfg.Listen == "" {
		return ""
	}
	return b.srv.ClientURL()
}

// Close drains the connection and stops the embedded server.
func (b *Bus) Close() {
	if b.NC != nil {
		_ = b.NC.Drain()
		b.NC.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}
