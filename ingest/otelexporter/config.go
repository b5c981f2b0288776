package otelexporter

import (
	"github.com/proofline/proofline/ingest/publish"

	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/config/configtls"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/proofline/proofline/schemas"
)

// Config is the exporter's configuration (the `proofline` section under
// `exporters:`).
type Config struct {
	// Timeout bounds one attempt to publish a batch and have JetStream
	// acknowledge all of it. It must be positive: without it a NATS
	// outage would hold a batch forever instead of handing it to retry.
	exporterhelper.TimeoutConfig `mapstructure:",squash"`
	// QueueConfig is exporterhelper's sending queue.
	QueueConfig configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	// BackOffConfig is exporterhelper's retry on retryable errors (NATS
	// or the stream unavailable).
	BackOffConfig configretry.BackOffConfig `mapstructure:"retry_on_failure"`

	// NATSURL is the NATS server or cluster that holds the CALLS stream:
	// `proofline serve --nats-listen` or the external cluster given to
	// `proofline serve --nats`. Comma-separated URLs for a cluster.
	NATSURL string `mapstructure:"nats_url"`
	// User and Password authenticate to NATS with user/password.
	User     string              `mapstructure:"user"`
	Password configopaque.String `mapstructure:"password"`
	// Token authenticates to NATS with a token.
	Token configopaque.String `mapstructure:"token"`
	// TokenFile holds the token instead, read at start: `proofline serve
	// --nats-listen` writes the token of its embedded NATS to
	// DATA/keys/nats.token, and pointing at that file keeps the secret
	// out of the Collector's configuration.
	TokenFile string `mapstructure:"token_file"`
	// CredentialsFile is a NATS .creds file (user JWT and nkey seed).
	CredentialsFile string `mapstructure:"credentials_file"`
	// TLS, when the section is present, makes the connection TLS only,
	// with the Collector's usual client TLS settings (ca_file, cert_file
	// and key_file for mutual TLS, server_name_override, ...): what a
	// NATS cluster across a network, or `proofline serve
	// --nats-listen-cert`, needs. Without it a tls:// URL is verified
	// against the system's roots.
	TLS configoptional.Optional[configtls.ClientConfig] `mapstructure:"tls"`

	// Principal is stamped into every record as ingested_by: over NATS
	// there is no bearer token to take it from, so the operator names the
	// collector here.
	Principal string `mapstructure:"principal"`
	// Subject the records are published on. The stream binds one
	// subject, proofline.calls.v1, and publish.Publisher owns that
	// convention; the field lets a config say so explicitly and makes any
	// other value fail at start instead of publishing where no stream
	// listens.
	Subject string `mapstructure:"subject"`

	// IncludeUnmatched records every span, not only tool calls (the tool
	// name falls back to the span name).
	IncludeUnmatched bool `mapstructure:"include_unmatched"`
	// RequiredAttribute, when set, records only spans carrying this
	// attribute (on the span or its resource), e.g. a marker a gateway
	// sets on the spans it wants as evidence.
	RequiredAttribute string `mapstructure:"required_attribute"`
	// CopyAttributes lists span or resource attributes copied, as
	// strings, into the record's attributes map.
	CopyAttributes []string `mapstructure:"copy_attributes"`

	// prevent unkeyed literal initialization
	_ struct{}
}

var _ component.Config = (*Config)(nil)

// DefaultPrincipal is ingested_by when the config names none.
const DefaultPrincipal = "otel-collector"

func createDefaultConfig() component.Config {
	return &Config{
		TimeoutConfig: exporterhelper.NewDefaultTimeoutConfig(),
		QueueConfig:   configoptional.Some(exporterhelper.NewDefaultQueueConfig()),
		BackOffConfig: configretry.NewDefaultBackOffConfig(),
		Principal:     DefaultPrincipal,
		Subject:       publish.Subject,
		CopyAttributes: []string{
			"gen_ai.tool.call.id",
		},
	}
}

// Validate checks the proofline-specific settings; the Collector
// validates the embedded exporterhelper sections itself.
func (c *Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.NATSURL) == "" {
		errs = append(errs, errors.New("nats_url is required (the NATS server of `proofline serve --nats-listen`, or its external cluster)"))
	}
	for _, u := range strings.Split(c.NATSURL, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if err := checkNATSURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	auths := 0
	for _, set := range []bool{c.Token != "", c.TokenFile != "", c.User != "", c.CredentialsFile != ""} {
		if set {
			auths++
		}
	}
	if auths > 1 {
		errs = append(errs, errors.New("token, token_file, user/password and credentials_file are mutually exclusive"))
	}
	if c.Password != "" && c.User == "" {
		errs = append(errs, errors.New("password needs user"))
	}
	if c.Principal == "" || len(c.Principal) > 256 {
		errs = append(errs, fmt.Errorf("principal must be 1 to 256 bytes, got %d", len(c.Principal)))
	}
	if c.Subject != "" && c.Subject != publish.Subject {
		errs = append(errs, fmt.Errorf("subject %q: the %s stream is bound to %s only", c.Subject, publish.Stream, publish.Subject))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("timeout must be positive: it bounds how long a batch waits for JetStream before it is retried"))
	}
	if len(c.CopyAttributes) > schemas.MaxAttributes {
		errs = append(errs, fmt.Errorf("copy_attributes lists %d keys; a record holds at most %d", len(c.CopyAttributes), schemas.MaxAttributes))
	}
	for _, k := range c.CopyAttributes {
		switch {
		case k == "" || len(k) > 128:
			errs = append(errs, fmt.Errorf("copy_attributes: key %q must be 1 to 128 bytes", k))
		case isRawContentKey(k):
			errs = append(errs, fmt.Errorf("copy_attributes: %q carries raw tool arguments, results or prompts, which never go into a record", k))
		}
	}
	return errors.Join(errs...)
}

// isRawContentKey reports semantic-convention attributes that carry raw
// tool arguments, results or prompts: they never go into a record.
func isRawContentKey(k string) bool {
	switch k {
	case keyToolCallArguments, keyToolCallResult,
		"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
		"gen_ai.prompt", "gen_ai.completion":
		return true
	}
	return false
}

func checkNATSURL(s string) error {
	if !strings.Contains(s, "://") {
		// nats.go accepts host:port and assumes nats://.
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("nats_url %q: %w", s, err)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("nats_url %q: scheme must be nats, tls, ws or wss", s)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("nats_url %q: no host", s)
	}
	return nil
}

// publishAckTimeout is how long an abandoned asynchronous publish keeps
// its slot: a little longer than one attempt, so that futures a timed-out
// attempt left behind are cleared before they fill the pending window.
func (c *Config) publishAckTimeout() time.Duration {
	return c.Timeout + 5*time.Second
}
