package delivery

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// meterName is the instrumentation scope of the delivery service's metrics.
const meterName = "github.com/sluicehq/sluice/services/delivery"

// Attributes of the delivery metrics. Their values come from small closed
// sets (formats, outcomes, reasons), never from a caller's names, so that
// no label carries a tenant's data and cardinality stays bounded.
const (
	attrFormat    = attribute.Key("sluice.format")
	attrOutcome   = attribute.Key("sluice.outcome")
	attrReason    = attribute.Key("error.type")
	attrDirection = attribute.Key("sluice.io.direction")
)

// metrics are the delivery service's instruments (OpenTelemetry, read by
// Prometheus at /metrics and exported over OTLP when configured).
type metrics struct {
	started, completed  metric.Int64Counter
	active              metric.Int64UpDownCounter
	duration            metric.Float64Histogram
	rows, io, parts     metric.Int64Counter
	reruns, partRetries metric.Int64Counter
	sweptUploads        metric.Int64Counter
	registration        metric.Registration
}

// newMetrics makes the instruments on the global meter provider, and the
// gauges of the part-buffer pool and of staging, read when collected.
func (s *Service) newMetrics() (*metrics, error) {
	m := otel.Meter(meterName)
	var err error
	mt := &metrics{}
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, e := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err == nil {
			err = e
		}
		// Exported from the start, at 0: an alert's rate() over a series
		// that appears with its first event would miss that event.
		c.Add(context.Background(), 0)
		return c
	}
	mt.started = counter("sluice.delivery.started", "{delivery}", "Deliveries started, by destination format.")
	mt.completed = counter("sluice.delivery.completed", "{delivery}", "Deliveries ended, by format, outcome (succeeded or failed) and, for failures, the stable reason (error.type).")
	mt.rows = counter("sluice.delivery.rows", "{row}", "Rows of the deliveries that ended.")
	mt.io = counter("sluice.delivery.io", "By", "Bytes of the deliveries that ended: Arrow IPC in (direction in), objects written (direction out).")
	mt.parts = counter("sluice.delivery.parts", "{part}", "Multipart parts (and single-request objects) of the deliveries that ended.")
	mt.partRetries = counter("sluice.delivery.part.retries", "{attempt}", "S3 requests of deliveries tried again after a transient fault (a part, a completion).")
	mt.reruns = counter("sluice.delivery.reruns", "{run}", "Deliveries run again from staged input after a transient fault outlasted the request retries.")
	mt.sweptUploads = counter("sluice.delivery.sweeper.aborted_uploads", "{upload}", "Multipart uploads the sweeper aborted because no delivery owned them.")
	if mt.active, err = m.Int64UpDownCounter("sluice.delivery.active", metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries running in this process.")); err != nil {
		return nil, err
	}
	if mt.duration, err = m.Float64Histogram("sluice.delivery.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a delivery's start to its end, by format and outcome."),
		metric.WithExplicitBucketBoundaries(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)); err != nil {
		return nil, err
	}
	inUse, err := m.Int64ObservableGauge("sluice.delivery.part_buffers.used", metric.WithUnit("By"),
		metric.WithDescription("Bytes of the process's part-buffer pool held by uploads; at sluice.delivery.part_buffers.limit, deliveries wait."))
	if err != nil {
		return nil, err
	}
	limit, err := m.Int64ObservableGauge("sluice.delivery.part_buffers.limit", metric.WithUnit("By"),
		metric.WithDescription("Bytes of the process's part-buffer pool."))
	if err != nil {
		return nil, err
	}
	waited, err := m.Float64ObservableCounter("sluice.delivery.part_buffers.wait", metric.WithUnit("s"),
		metric.WithDescription("Time uploads spent waiting for part buffers, all together: where it grows, the pool holds deliveries back."))
	if err != nil {
		return nil, err
	}
	runWaited, err := m.Float64ObservableCounter("sluice.delivery.running.wait", metric.WithUnit("s"),
		metric.WithDescription("Time streams spent waiting for a running slot (--max-running, --max-tenant-running), all together."))
	if err != nil {
		return nil, err
	}
	runWaiting, err := m.Int64ObservableGauge("sluice.delivery.running.waiting", metric.WithUnit("{stream}"),
		metric.WithDescription("Streams waiting for a running slot now."))
	if err != nil {
		return nil, err
	}
	runYielded, err := m.Int64ObservableCounter("sluice.delivery.running.yielded", metric.WithUnit("{slot}"),
		metric.WithDescription("Running slots a stream gave up to a tenant running at least two fewer, which had a stream waiting."))
	if err != nil {
		return nil, err
	}
	staged, err := m.Int64ObservableGauge("sluice.delivery.staging.used", metric.WithUnit("By"),
		metric.WithDescription("Bytes of staged input this process's staging store holds."))
	if err != nil {
		return nil, err
	}
	if mt.registration, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now, _ := s.pool.InUse()
		o.ObserveInt64(inUse, int64(now)*int64(s.pool.BufferSize()))
		o.ObserveInt64(limit, int64(s.pool.Cap())*int64(s.pool.BufferSize()))
		o.ObserveFloat64(waited, s.pool.Waited().Seconds())
		o.ObserveFloat64(runWaited, s.admission.running.Waited().Seconds())
		_, waiting := s.admission.running.Running()
		o.ObserveInt64(runWaiting, int64(waiting))
		o.ObserveInt64(runYielded, s.admission.running.yielded.Load())
		if s.staging != nil {
			o.ObserveInt64(staged, s.staging.Used())
		}
		return nil
	}, inUse, limit, waited, runWaited, runWaiting, runYielded, staged); err != nil {
		return nil, err
	}
	return mt, err
}

// began counts a delivery run starting; the function it answers counts
// its end with its figures.
func (m *metrics) began(ctx context.Context, format string) func(p *progress, reason string) {
	start := time.Now()
	f := metric.WithAttributes(attrFormat.String(format))
	m.started.Add(ctx, 1, f)
	m.active.Add(ctx, 1, f)
	return func(p *progress, reason string) {
		ctx := context.WithoutCancel(ctx)
		outcome := []attribute.KeyValue{attrFormat.String(format), attrOutcome.String("succeeded")}
		if reason != "" {
			outcome = []attribute.KeyValue{attrFormat.String(format), attrOutcome.String("failed"), attrReason.String(reason)}
		}
		m.active.Add(ctx, -1, f)
		m.completed.Add(ctx, 1, metric.WithAttributes(outcome...))
		m.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(outcome[:2]...))
		m.rows.Add(ctx, p.rows.Load(), f)
		m.io.Add(ctx, p.bytesIn.Load(), metric.WithAttributes(attrFormat.String(format), attrDirection.String("in")))
		m.io.Add(ctx, p.bytesOut.Load(), metric.WithAttributes(attrFormat.String(format), attrDirection.String("out")))
		m.parts.Add(ctx, p.parts.Load(), f)
	}
}
