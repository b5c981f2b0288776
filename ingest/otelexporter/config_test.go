package otelexporter

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
)

func TestDefaultConfig(t *testing.T) {
	f := NewFactory()
	if got := f.Type().String(); got != "proofline" {
		t.Fatalf("type = %q, want proofline", got)
	}
	cfg := f.CreateDefaultConfig().(*Config)
	if err := componenttest.CheckConfigStruct(cfg); err != nil {
		t.Fatalf("config struct: %v", err)
	}
	// The default is complete but for the one thing only the operator
	// knows: where NATS is.
	err := confmap.Validate(cfg)
	if err == nil || !strings.Contains(err.Error(), "nats_url is required") {
		t.Fatalf("default config: %v, want nats_url is required", err)
	}
	cfg.NATSURL = "nats://127.0.0.1:4222"
	if err := confmap.Validate(cfg); err != nil {
		t.Fatalf("default config with nats_url: %v", err)
	}
	if cfg.Principal != DefaultPrincipal || cfg.Subject != "proofline.calls.v1" || cfg.Timeout <= 0 ||
		!cfg.QueueConfig.HasValue() || !cfg.BackOffConfig.Enabled {
		t.Fatalf("defaults: %+v", cfg)
	}
}

// TestLoadConfig reads Collector YAML sections the way the Collector does
// (confmap unmarshal into the factory's default, then validation).
func TestLoadConfig(t *testing.T) {
	conf, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id      string
		check   func(t *testing.T, c *Config)
		wantErr string
	}{
		{id: "proofline", check: func(t *testing.T, c *Config) {
			if c.NATSURL != "nats://127.0.0.1:4222" || c.Principal != DefaultPrincipal || c.Timeout != 5*time.Second {
				t.Errorf("got %+v", c)
			}
			if c.TLS.HasValue() { // plain text unless a tls section says otherwise
				t.Errorf("tls set without a tls section: %+v", c.TLS.Get())
			}
		}},
		{id: "proofline/full", check: func(t *testing.T, c *Config) {
			if c.User != "collector" || c.Password != configopaque.String("s3cret") || c.Principal != "collector-1" ||
				c.RequiredAttribute != "proofline.evidence" || len(c.CopyAttributes) != 3 || c.Timeout != 3*time.Second {
				t.Errorf("got %+v", c)
			}
			q := c.QueueConfig.Get()
			if q == nil || q.NumConsumers != 4 || q.QueueSize != 500 {
				t.Errorf("sending_queue: %+v", q)
			}
			if !c.BackOffConfig.Enabled || c.BackOffConfig.InitialInterval != 100*time.Millisecond || c.BackOffConfig.MaxElapsedTime != time.Minute {
				t.Errorf("retry_on_failure: %+v", c.BackOffConfig)
			}
		}},
		{id: "proofline/no_queue", check: func(t *testing.T, c *Config) {
			if c.QueueConfig.HasValue() || c.BackOffConfig.Enabled || c.Token != "t0ken" {
				t.Errorf("got queue=%v retry=%v token=%q", c.QueueConfig.HasValue(), c.BackOffConfig.Enabled, c.Token)
			}
		}},
		{id: "proofline/tls", check: func(t *testing.T, c *Config) {
			tc := c.TLS.Get()
			if tc == nil || tc.CAFile != "/etc/otelcol/nats-ca.pem" || tc.CertFile != "/etc/otelcol/client.pem" || tc.KeyFile != "/etc/otelcol/client-key.pem" || c.CredentialsFile == "" {
				t.Errorf("tls: %+v", tc)
			}
		}},
		{id: "proofline/bad_queue", wantErr: "queue_size"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			var id component.ID
			if err := id.UnmarshalText([]byte(tt.id)); err != nil {
				t.Fatal(err)
			}
			sub, err := conf.Sub(id.String())
			if err != nil {
				t.Fatal(err)
			}
			cfg := NewFactory().CreateDefaultConfig().(*Config)
			if err := sub.Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate = %v, want an error naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() *Config {
		c := createDefaultConfig().(*Config)
		c.NATSURL = "nats://127.0.0.1:4222"
		return c
	}
	tests := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string // "" means valid
	}{
		{"defaults with url", func(*Config) {}, ""},
		{"cluster urls", func(c *Config) { c.NATSURL = "nats://a:4222, tls://b:4222,c:4222" }, ""},
		{"missing url", func(c *Config) { c.NATSURL = " " }, "nats_url is required"},
		{"http url", func(c *Config) { c.NATSURL = "http://127.0.0.1:4222" }, "scheme must be"},
		{"url without host", func(c *Config) { c.NATSURL = "nats://:4222" }, "no host"},
		{"user and password", func(c *Config) { c.User, c.Password = "u", "p" }, ""},
		{"token", func(c *Config) { c.Token = "t" }, ""},
		{"token file", func(c *Config) { c.TokenFile = "/var/lib/proofline/keys/nats.token" }, ""},
		{"credentials file", func(c *Config) { c.CredentialsFile = "collector.creds" }, ""},
		{"token and user", func(c *Config) { c.Token, c.User = "t", "u" }, "mutually exclusive"},
		{"token and token file", func(c *Config) { c.Token, c.TokenFile = "t", "f" }, "mutually exclusive"},
		{"password without user", func(c *Config) { c.Password = "p" }, "password needs user"},
		{"creds and token", func(c *Config) { c.CredentialsFile, c.Token = "x.creds", "t" }, "mutually exclusive"},
		{"empty principal", func(c *Config) { c.Principal = "" }, "principal"},
		{"long principal", func(c *Config) { c.Principal = strings.Repeat("p", 257) }, "principal"},
		{"explicit subject", func(c *Config) { c.Subject = "proofline.calls.v1" }, ""},
		{"empty subject", func(c *Config) { c.Subject = "" }, ""},
		{"other subject", func(c *Config) { c.Subject = "calls.other" }, "subject"},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, "timeout must be positive"},
		{"copy raw arguments", func(c *Config) { c.CopyAttributes = []string{"gen_ai.tool.call.arguments"} }, "raw tool arguments"},
		{"copy raw result", func(c *Config) { c.CopyAttributes = []string{"gen_ai.tool.call.result"} }, "raw tool arguments"},
		{"copy empty key", func(c *Config) { c.CopyAttributes = []string{""} }, "1 to 128 bytes"},
		{"copy too many", func(c *Config) { c.CopyAttributes = make([]string, 65) }, "at most 64"},
		{"include unmatched", func(c *Config) { c.IncludeUnmatched = true }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
