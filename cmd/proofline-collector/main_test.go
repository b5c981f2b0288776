package main

import (
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/otelcol/otelcoltest"

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
// validate` does.
func TestShippedConfig(t *testing.T) {
	// The defaults, whatever this shell exports.
	for _, v := range []string{"PROOFLINE_NATS_URL", "PROOFLINE_COLLECTOR_PRINCIPAL", "PROOFLINE_NATS_TOKEN_FILE",
		"OTLP_GRPC_ENDPOINT", "OTLP_HTTP_ENDPOINT", "COLLECTOR_METRICS_PORT"} {
		t.Setenv(v, "") // restored after the test
		os.Unsetenv(v)
	}
	f, err := components()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := otelcoltest.LoadConfigAndValidate(filepath.Join("..", "..", "collector-config", "proofline.yaml"), f)
	if err != nil {
		t.Fatal(err)
	}
	exp, ok := cfg.Exporters[component.MustNewID("proofline")].(*otelexporter.Config)
	if !ok {
		t.Fatalf("exporters: %v", cfg.Exporters)
	}
	if exp.NATSURL != "nats://127.0.0.1:4222" || exp.Principal != "otel-collector" || exp.TokenFile != "" || !exp.QueueConfig.HasValue() {
		t.Fatalf("proofline exporter with the environment unset: %+v", exp)
	}
	p := cfg.Service.Pipelines
	if len(p) != 1 {
		t.Fatalf("pipelines: %v", p)
	}
	for id, pl := range p {
		if id.String() != "traces" || len(pl.Receivers) != 1 || len(pl.Processors) != 2 || len(pl.Exporters) != 1 ||
			pl.Processors[0].String() != "memory_limiter" || pl.Processors[1].String() != "batch" || pl.Exporters[0].String() != "proofline" {
			t.Fatalf("pipeline %s: %+v", id, pl)
		}
	}
}
