package testenv

import (
	"context"
	"net"
	"sync"
	"testing"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// OTLP is an OTLP/gRPC receiver on 127.0.0.1 that keeps what it is sent:
// the other end of a process's trace and metric exporters, so that a
// test sees what went over the wire. (The OpenTelemetry Collector would
// need a build of its own for the same answer.)
type OTLP struct {
	// Endpoint is the receiver's URL for OTEL_EXPORTER_OTLP_ENDPOINT
	// (http: the exporters then send without TLS).
	Endpoint string

	mu      sync.Mutex
	spans   []*tracepb.ResourceSpans
	metrics []*metricspb.ResourceMetrics
}

// NewOTLP starts a receiver, stopped when the test ends.
func NewOTLP(t testing.TB) *OTLP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &OTLP{Endpoint: "http://" + ln.Addr().String()}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, &otlpTraces{o: o})
	colmetricspb.RegisterMetricsServiceServer(srv, &otlpMetrics{o: o})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return o
}

// Spans answers every resource's spans received so far.
func (o *OTLP) Spans() []*tracepb.ResourceSpans {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*tracepb.ResourceSpans(nil), o.spans...)
}

// Metrics answers every resource's metrics received so far.
func (o *OTLP) Metrics() []*metricspb.ResourceMetrics {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*metricspb.ResourceMetrics(nil), o.metrics...)
}

type otlpTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	o *OTLP
}

func (s *otlpTraces) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	s.o.spans = append(s.o.spans, req.GetResourceSpans()...)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type otlpMetrics struct {
	colmetricspb.UnimplementedMetricsServiceServer
	o *OTLP
}

func (s *otlpMetrics) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	s.o.metrics = append(s.o.metrics, req.GetResourceMetrics()...)
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}
