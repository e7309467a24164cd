// The smallest OpenTelemetry Collector kaip's tests need (tools/otelcol/build.sh): the otlp
// receiver and the file exporter, nothing else, so a cold build stays short. The e2e test
// tests/e2e_local/test_observability.py points kaip up's OTEL_EXPORTER_OTLP_ENDPOINT at it and
// reads the traces it writes. Hand-written in the shape the OpenTelemetry Collector Builder
// generates (components() and a main that runs otelcol's command); config from a file only.
//
// The Collector's own telemetry is a logger to stderr (warnings and errors) and nothing else:
// the stock otelconftelemetry factory (its own metrics, traces and logs through the OpenTelemetry
// Go SDK, with every exporter and resource detector) would more than double what compiles.
package main

import (
	"context"
	"log"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry"
	"go.uber.org/zap"
)

// version is set by build.sh (-ldflags -X main.version=...).
var version = "dev"

func components() (otelcol.Factories, error) {
	receivers, err := otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory())
	if err != nil {
		return otelcol.Factories{}, err
	}
	exporters, err := otelcol.MakeFactoryMap[exporter.Factory](fileexporter.NewFactory())
	if err != nil {
		return otelcol.Factories{}, err
	}
	return otelcol.Factories{
		Receivers: receivers,
		Exporters: exporters,
		Telemetry: telemetry.NewFactory(
			func() component.Config { return &telemetryConfig{} },
			telemetry.WithCreateLogger(stderrLogger),
		),
	}, nil
}

// telemetryConfig is the (empty) service::telemetry section: nothing to configure.
type telemetryConfig struct{}

func stderrLogger(context.Context, telemetry.LoggerSettings, component.Config) (*zap.Logger, component.ShutdownFunc, error) {
	config := zap.NewProductionConfig()
	config.Level = zap.NewAtomicLevelAt(zap.WarnLevel)
	logger, err := config.Build()
	if err != nil {
		return nil, nil, err
	}
	return logger, func(context.Context) error { return nil }, nil
}

func main() {
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-kaip",
			Description: "OpenTelemetry Collector for kaip's tests: otlp receiver, file exporter",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory()},
				DefaultScheme:     "file",
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		log.Fatal(err)
	}
}
