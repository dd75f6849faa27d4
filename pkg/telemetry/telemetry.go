// Package telemetry sets up OpenTelemetry tracing and metrics for a Sluice
// process from the standard OTEL_* environment variables, and serves the
// metrics to Prometheus.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Version is the version processes report as service.version; set at
// build time with -ldflags "-X github.com/sluicehq/sluice/pkg/telemetry.Version=...".
var Version = "dev"

// Options adjust Setup. The zero value exports as the OTEL_* variables say.
type Options struct {
	// ServiceName is service.name unless OTEL_SERVICE_NAME says otherwise.
	ServiceName string
	// Instance is service.instance.id (a host or pod name).
	Instance string
	// SpanProcessors and MetricReaders are added as given (tests keep
	// spans and metrics in memory with them).
	SpanProcessors []sdktrace.SpanProcessor
	MetricReaders  []sdkmetric.Reader
}

// Telemetry is a process's tracer and meter providers, installed as the
// global ones.
type Telemetry struct {
	Tracer *sdktrace.TracerProvider
	Meter  *sdkmetric.MeterProvider
	// Metrics serves the metrics in Prometheus's text format, for /metrics.
	Metrics http.Handler
}

// Setup installs global tracer and meter providers and W3C trace-context
// propagation. Spans and metrics are exported over OTLP when
// OTEL_EXPORTER_OTLP_ENDPOINT (or the _TRACES_/_METRICS_ one) is set, over
// gRPC or, with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, HTTP (the
// exporters read the rest of the OTEL_* variables themselves); otherwise
// spans are still made, so that trace ids reach the logs, but go nowhere.
// OTEL_TRACES_EXPORTER or OTEL_METRICS_EXPORTER set to "none" turns one
// off. Metrics are always readable through Metrics.
func Setup(ctx context.Context, o Options) (*Telemetry, error) {
	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(o.ServiceName), semconv.ServiceVersion(Version))}
	if o.Instance != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceInstanceID(o.Instance)))
	}
	// From the environment last, so that OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES win.
	res, err := resource.New(ctx, append(attrs, resource.WithTelemetrySDK(), resource.WithFromEnv())...)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exporting("TRACES") {
		exp, err := traceExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		topts = append(topts, sdktrace.WithBatcher(exp))
	}
	for _, p := range o.SpanProcessors {
		topts = append(topts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(topts...)

	// A registry of the process's own: two Setups in one process (tests)
	// do not collide in Prometheus's default one.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prom, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	if exporting("METRICS") {
		exp, err := metricExporter(ctx)
		if err != nil {
			_ = tp.Shutdown(ctx)
			return nil, fmt.Errorf("otlp metric exporter: %w", err)
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	for _, r := range o.MetricReaders {
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)

	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Telemetry{Tracer: tp, Meter: mp, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}, nil
}

// Shutdown flushes and stops both providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.Tracer.ForceFlush(ctx), t.Tracer.Shutdown(ctx), t.Meter.Shutdown(ctx))
}

// exporting reports whether signal (TRACES or METRICS) goes over OTLP.
func exporting(signal string) bool {
	if strings.EqualFold(os.Getenv("OTEL_"+signal+"_EXPORTER"), "none") {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT") != ""
}

func overHTTP(signal string) bool {
	p := os.Getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
	if p == "" {
		p = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	return strings.HasPrefix(p, "http")
}

func traceExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	if overHTTP("TRACES") {
		return otlptracehttp.New(ctx)
	}
	return otlptracegrpc.New(ctx)
}

func metricExporter(ctx context.Context) (sdkmetric.Exporter, error) {
	if overHTTP("METRICS") {
		return otlpmetrichttp.New(ctx)
	}
	return otlpmetricgrpc.New(ctx)
}
