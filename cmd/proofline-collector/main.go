// Command proofline-collector is an OpenTelemetry Collector distribution
// with proofline's exporter: the OTLP receiver, the batch and
// memory_limiter processors, and the proofline, debug and nop exporters.
//
// It is what the OpenTelemetry Collector Builder (ocb) generates from
// collector-config/builder-config.yaml, kept in the repository so that
// `go build ./cmd/...` builds it with the module's own pinned versions;
// collector-config/proofline.yaml is a ready pipeline for it:
//
//	proofline-collector --config collector-config/proofline.yaml
package main

import (
	"os"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	info := component.BuildInfo{
		Command:     "proofline-collector",
		Description: "OpenTelemetry Collector with the proofline exporter (tool-call spans to signed call records)",
		Version:     version,
	}
	set := otelcol.CollectorSettings{
		BuildInfo: info,
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
			},
		},
		ProviderModules: map[string]string{
			envprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme():  "go.opentelemetry.io/collector/confmap/provider/envprovider v1.71.0",
			fileprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme(): "go.opentelemetry.io/collector/confmap/provider/fileprovider v1.71.0",
			yamlprovider.NewFactory().Create(confmap.ProviderSettings{}).Scheme(): "go.opentelemetry.io/collector/confmap/provider/yamlprovider v1.71.0",
		},
	}
	// cobra prints the error itself.
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		os.Exit(1)
	}
}
