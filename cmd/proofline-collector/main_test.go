package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"

	"github.com/proofline/proofline/ingest/otelexporter"
)

// TestComponents checks the distribution holds what builder-config.yaml
// lists.
func TestComponents(t *testing.T) {
	f, err := components()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		kind string
		got  bool
	}{
		{"extension file_storage", f.Extensions[component.MustNewType("file_storage")] != nil},
		{"receiver otlp", f.Receivers[component.MustNewType("otlp")] != nil},
		{"processor batch", f.Processors[component.MustNewType("batch")] != nil},
		{"processor memory_limiter", f.Processors[component.MustNewType("memory_limiter")] != nil},
		{"exporter proofline", f.Exporters[component.MustNewType("proofline")] != nil},
		{"exporter debug", f.Exporters[component.MustNewType("debug")] != nil},
		{"exporter nop", f.Exporters[component.MustNewType("nop")] != nil},
		{"telemetry", f.Telemetry != nil},
	} {
		if !want.got {
			t.Errorf("missing %s", want.kind)
		}
	}
}

// TestShippedConfig loads collector-config/proofline.yaml with this
// distribution's factories and validates it, as `proofline-collector
// validate` does, and checks the settings the README promises: the
// exporter's sending queue is persistent (file_storage), retry never gives
// up on a batch, and no batch processor holds accepted spans in memory in
// front of the persistent queue.
func TestShippedConfig(t *testing.T) {
	cfg := loadShipped(t)
	exp, ok := cfg.Exporters[component.MustNewID("proofline")].(*otelexporter.Config)
	if !ok {
		t.Fatalf("exporters: %v", cfg.Exporters)
	}
	if exp.NATSURL != "nats://127.0.0.1:4222" || exp.Principal != "otel-collector" || exp.TokenFile != "" || !exp.QueueConfig.HasValue() {
		t.Fatalf("proofline exporter with the environment unset: %+v", exp)
	}
	storage := component.MustNewID("file_storage")
	q := exp.QueueConfig.Get()
	if q.StorageID == nil || *q.StorageID != storage {
		t.Fatalf("sending_queue.storage = %v, want file_storage (a persistent queue)", q.StorageID)
	}
	if !q.Batch.HasValue() {
		t.Fatal("sending_queue.batch is off: batching would need the batch processor, which holds accepted spans in memory")
	}
	if !exp.BackOffConfig.Enabled || exp.BackOffConfig.MaxElapsedTime != 0 {
		t.Fatalf("retry_on_failure %+v: want enabled with max_elapsed_time 0 (never drop a batch)", exp.BackOffConfig)
	}
	fs, ok := cfg.Extensions[storage].(*filestorage.Config)
	if !ok {
		t.Fatalf("extensions: %v", cfg.Extensions)
	}
	if fs.Directory != "./proofline-collector-storage" || !fs.CreateDirectory || !fs.FSync {
		t.Fatalf("file_storage with the environment unset: %+v", fs)
	}
	if len(cfg.Service.Extensions) != 1 || cfg.Service.Extensions[0] != storage {
		t.Fatalf("service.extensions = %v, want [file_storage]", cfg.Service.Extensions)
	}
	p := cfg.Service.Pipelines
	if len(p) != 1 {
		t.Fatalf("pipelines: %v", p)
	}
	for id, pl := range p {
		if id.String() != "traces" || len(pl.Receivers) != 1 || len(pl.Processors) != 1 || len(pl.Exporters) != 1 ||
			pl.Processors[0].String() != "memory_limiter" || pl.Exporters[0].String() != "proofline" {
			t.Fatalf("pipeline %s: %+v", id, pl)
		}
	}
}

// loadShipped loads and validates collector-config/proofline.yaml, with
// extra config files merged over it in order (as repeated --config flags
// are), with the environment the config reads unset.
func loadShipped(t *testing.T, extra ...string) *otelcol.Config {
	t.Helper()
	for _, v := range []string{"PROOFLINE_NATS_URL", "PROOFLINE_COLLECTOR_PRINCIPAL", "PROOFLINE_NATS_TOKEN_FILE",
		"PROOFLINE_COLLECTOR_STORAGE", "OTLP_GRPC_ENDPOINT", "OTLP_HTTP_ENDPOINT", "COLLECTOR_METRICS_PORT"} {
		t.Setenv(v, "") // restored after the test
		os.Unsetenv(v)
	}
	f, err := components()
	if err != nil {
		t.Fatal(err)
	}
	uris := []string{"file:" + filepath.Join("..", "..", "collector-config", "proofline.yaml")}
	for _, e := range extra {
		uris = append(uris, "file:"+e)
	}
	provider, err := otelcol.NewConfigProvider(otelcol.ConfigProviderSettings{ResolverSettings: confmap.ResolverSettings{
		URIs:              uris,
		ProviderFactories: []confmap.ProviderFactory{envprovider.NewFactory(), fileprovider.NewFactory(), yamlprovider.NewFactory()},
		DefaultScheme:     "env",
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := provider.Get(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if err := confmap.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestREADMECollectorSnippets merges every YAML snippet of the README's
// collector section over the shipped config and validates the result with
// this distribution's factories, so the README cannot show settings the
// distribution does not accept.
func TestREADMECollectorSnippets(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## OpenTelemetry: the collector distribution")
	if start < 0 {
		t.Fatal("README has no collector section")
	}
	section = section[start+3:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var snippets []string
	for rest := section; ; {
		i := strings.Index(rest, "```yaml\n")
		if i < 0 {
			break
		}
		rest = rest[i+len("```yaml\n"):]
		j := strings.Index(rest, "```")
		if j < 0 {
			t.Fatal("unterminated yaml block in the README's collector section")
		}
		snippets = append(snippets, rest[:j])
		rest = rest[j:]
	}
	if len(snippets) == 0 {
		t.Fatal("no yaml snippets in the README's collector section")
	}
	for i, s := range snippets {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snippet.yaml")
			if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
				t.Fatal(err)
			}
			loadShipped(t, path)
		})
	}
}
