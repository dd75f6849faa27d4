package delivery

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracer makes the delivery service's own spans: a delivery's run, its
// workflow steps, a resolution. It is asked of the global provider each
// time, so that a process (or test) that installs its own is followed.
func tracer() trace.Tracer { return otel.Tracer("github.com/sluicehq/sluice/services/delivery") }

// Span attributes. Resource names are not secrets and let an operator find
// the delivery; no attribute carries a token, a key or the data.
const (
	attrDelivery    = attribute.Key("sluice.delivery")
	attrDestination = attribute.Key("sluice.destination")
	attrStep        = attribute.Key("sluice.step")
	attrAction      = attribute.Key("sluice.action")
	attrRun         = attribute.Key("sluice.run")
)

// traceParent answers ctx's span as a W3C traceparent, "" when it has
// none, for the delivery record and the lease table.
func traceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// linkTo answers a link to the span of a traceparent, when it parses: a
// resolution's run, or a rerun after a takeover, links to the delivery's
// first trace.
func linkTo(parent string) []trace.SpanStartOption {
	if parent == "" {
		return nil
	}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": parent}))
	if !sc.IsValid() {
		return nil
	}
	return []trace.SpanStartOption{trace.WithLinks(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("sluice.link", "delivery")}})}
}

// traceIDOf answers the trace id of a traceparent ("" when it has none).
func traceIDOf(parent string) string {
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": parent}))
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}
