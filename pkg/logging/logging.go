// Package logging builds Sluice's structured loggers: log/slog JSON whose
// records carry the request id and the trace and span ids found in the
// context they are logged with.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// New answers a JSON logger writing to w at level, tagged with service.
func New(w io.Writer, level slog.Level, service string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(contextHandler{h}).With(slog.String("service", service))
}

// ParseLevel reads debug, info, warn or error; anything else is info.
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

type requestIDKey struct{}

// WithRequestID returns ctx carrying a request id for every log line.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID answers the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

type fieldsKey struct{}

// fields are attributes learnt while a request or a delivery runs (the
// caller's subject once authenticated, the delivery's name once made),
// shared by every context derived from the one that holds them, so that
// lines logged before they were known to code further in, and the
// request's own closing line, carry them too.
type fields struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

// WithFields returns ctx holding a set of fields for Add, or ctx itself
// when it holds one already (Add then reaches the request's set).
func WithFields(ctx context.Context) context.Context {
	if _, ok := ctx.Value(fieldsKey{}).(*fields); ok {
		return ctx
	}
	return context.WithValue(ctx, fieldsKey{}, &fields{})
}

// Add puts attrs on every later line logged with ctx or a context derived
// from it (replacing a field of the same key); without WithFields it does
// nothing.
func Add(ctx context.Context, attrs ...slog.Attr) {
	f, ok := ctx.Value(fieldsKey{}).(*fields)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
next:
	for _, a := range attrs {
		for i := range f.attrs {
			if f.attrs[i].Key == a.Key {
				f.attrs[i] = a
				continue next
			}
		}
		f.attrs = append(f.attrs, a)
	}
}

// contextHandler adds the request id, the trace ids and the fields of the
// record's context.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if f, ok := ctx.Value(fieldsKey{}).(*fields); ok {
		// A line that names a field itself keeps its own value.
		own := map[string]bool{}
		r.Attrs(func(a slog.Attr) bool { own[a.Key] = true; return true })
		f.mu.Lock()
		for _, a := range f.attrs {
			if !own[a.Key] {
				r.AddAttrs(a)
			}
		}
		f.mu.Unlock()
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

type loggerKey struct{}

// WithLogger returns ctx carrying the logger of the server handling it, so
// that code deep in a request logs where the request's logs go.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// FromContext answers the logger in ctx, or slog.Default().
func FromContext(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}
