// Package grpcserver is the one way Sluice builds a gRPC server: health per
// service name, server reflection, panic recovery, request ids and
// structured logs, OpenTelemetry, error mapping, authentication, and an
// orderly shutdown.
package grpcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alphapb "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apidescriptor"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/logging"
)

// RequestIDHeader is the metadata key of the request id, read from the
// caller when it sends a sane one and always sent back in the header.
const RequestIDHeader = "x-request-id"

// Config says how to build a server.
type Config struct {
	// Logger receives request and error logs.
	Logger *slog.Logger
	// Verifier authenticates callers. Required: no Sluice server runs open.
	Verifier *auth.Verifier
	// ShutdownTimeout bounds GracefulStop; in-flight calls are cut after it.
	ShutdownTimeout time.Duration
	// ServerOptions are added after Sluice's own (e.g. TLS credentials).
	ServerOptions []grpc.ServerOption
	// MaxRecvMsgBytes bounds one incoming message; MaxRecvMsgBytes (the
	// constant) when zero. The delivery server takes larger slices of
	// Arrow streams than any unary request needs.
	MaxRecvMsgBytes int
	// Decode, when set, decodes the requests it knows from the received
	// buffers itself, answering false for the others (which proto
	// decodes): a service whose requests carry bulk bytes keeps them in
	// buffers of its own rather than a fresh allocation each.
	Decode func(data mem.BufferSlice, v any) bool
}

// Limits every Sluice server and client holds callers to.
const (
	// MaxHeaderListBytes bounds a request's metadata: two tokens of
	// auth.MaxTokenBytes and the usual headers fit with room to spare.
	MaxHeaderListBytes = 16 << 10
	// MaxRecvMsgBytes bounds one message: a 4 MiB slice of an Arrow
	// stream with its framing, far above any unary request.
	MaxRecvMsgBytes = 5 << 20
	// MaxConcurrentStreams bounds the calls one connection has open.
	MaxConcurrentStreams = 256
)

// Server is a gRPC server with Sluice's interceptors and lifecycle.
type Server struct {
	grpc    *grpc.Server
	health  *health.Server
	logger  *slog.Logger
	timeout time.Duration
	names   []string
	rules   auth.Rules
	closers []io.Closer
}

// New builds a server. Register services on it, then Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("grpcserver: a Verifier is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 15 * time.Second
	}
	if cfg.MaxRecvMsgBytes <= 0 {
		cfg.MaxRecvMsgBytes = MaxRecvMsgBytes
	}
	s := &Server{health: health.NewServer(), logger: cfg.Logger, timeout: cfg.ShutdownTimeout, rules: auth.Rules{}}
	authz := auth.Authorizer{Verifier: cfg.Verifier, Rules: s.rule}
	// Order as openfga and cerbos: recovery first, then request ids and
	// logging, then the error mapping (so logs show the final code), then
	// validation of every request's bounds, then authentication and the
	// method's rule, closest to the handler.
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		grpc.ForceServerCodecV2(newLenientCodec(cfg.Decode)),
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		// Clients may ping every 10 s at most, idle or not; a connection
		// idle for 15 minutes is closed, a silent peer dropped after 20 s.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 15 * time.Minute, Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(
			s.recoverUnary,
			s.logUnary,
			s.mapErrorsUnary,
			validateUnary,
			authz.UnaryServerInterceptor(),
		),
		grpc.ChainStreamInterceptor(
			s.recoverStream,
			s.logStream,
			s.mapErrorsStream,
			validateStream,
			authz.StreamServerInterceptor(),
		),
	}
	s.grpc = grpc.NewServer(append(opts, cfg.ServerOptions...)...)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	descriptors, err := apidescriptor.Resolver()
	if err != nil {
		return nil, err
	}
	// Both reflection versions, answering from descriptors that keep the
	// proto comments so that `grpcurl describe` shows the documentation.
	ropts := reflection.ServerOptions{Services: s.grpc, DescriptorResolver: descriptors}
	reflectionpb.RegisterServerReflectionServer(s.grpc, reflection.NewServerV1(ropts))
	reflectionv1alphapb.RegisterServerReflectionServer(s.grpc, reflection.NewServer(ropts))
	return s, nil
}

// RegisterService registers an implementation with the authorization rule
// of each of its methods and reports it SERVING under its service name, e.g.
// `sluice.credential.v1.CredentialService`. A method without a rule is
// denied to every caller.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any, rules auth.Rules) {
	for m, r := range rules {
		s.rules[m] = r
	}
	s.grpc.RegisterService(desc, impl)
	s.names = append(s.names, desc.ServiceName)
	s.health.SetServingStatus(desc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}

// rule answers the authorization rule of a method.
func (s *Server) rule(fullMethod string) auth.Rule {
	if auth.IsPublicMethod(fullMethod) {
		return auth.Public
	}
	return s.rules[fullMethod]
}

// Rule answers the authorization rule a method has on this server (Deny
// when it has none), for tests that check every method has one.
func (s *Server) Rule(fullMethod string) auth.Rule { return s.rule(fullMethod) }

// HasRule reports whether a method was given a rule, Deny included: a
// method denied on purpose (Arrow Flight's, but DoPut) is not an omission.
func (s *Server) HasRule(fullMethod string) bool {
	_, ok := s.rules[fullMethod]
	return ok || auth.IsPublicMethod(fullMethod)
}

// GRPC answers the underlying server, for registrations that need it.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// OnShutdown closes c after the server stopped serving, in the order added.
func (s *Server) OnShutdown(c io.Closer) { s.closers = append(s.closers, c) }

// Start serves on lis in the background and answers a channel that
// receives the result once serving ends (nil after Shutdown).
func (s *Server) Start(lis net.Listener) <-chan error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 1)
	go func() {
		err := s.grpc.Serve(lis)
		if errors.Is(err, grpc.ErrServerStopped) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("serve: %w", err)
		}
		errc <- err
	}()
	return errc
}

// Serve serves on lis until ctx ends, then shuts down in order.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	errc := s.Start(lis)
	select {
	case err := <-errc:
		s.Shutdown()
		return err
	case <-ctx.Done():
	}
	s.Shutdown()
	return <-errc
}

// Shutdown reports NOT_SERVING so load balancers stop sending, lets
// in-flight calls finish within the timeout, then closes what was added
// with OnShutdown.
func (s *Server) Shutdown() {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.timeout):
		s.logger.Warn("graceful stop timed out; cutting remaining calls", slog.Duration("timeout", s.timeout))
		s.grpc.Stop()
		<-done
	}
	s.logger.Info("stopped serving")
	s.closeAll()
}

func (s *Server) closeAll() {
	for _, c := range s.closers {
		if err := c.Close(); err != nil {
			s.logger.Error("close on shutdown", slog.String("error", err.Error()))
		}
	}
	s.closers = nil
}

var saneRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestContext tags ctx with a request id, taken from the caller when it
// sent a sane one, and sends it back as a header.
func requestContext(ctx context.Context) context.Context {
	var id string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDHeader); len(v) == 1 && saneRequestID.MatchString(v[0]) {
			id = v[0]
		}
	}
	if id == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
	return logging.WithRequestID(ctx, id)
}

func (s *Server) panicked(ctx context.Context, method string, p any) error {
	s.logger.ErrorContext(ctx, "handler panicked",
		slog.String("method", method), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	return apierror.Status(ctx, s.logger, apierror.New(codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL,
		"internal error; the cause is logged on the server"))
}

func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, s.panicked(ctx, info.FullMethod, p)
		}
	}()
	return h(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.panicked(ss.Context(), info.FullMethod, p)
		}
	}()
	return h(srv, ss)
}

func (s *Server) logCall(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	level := slog.LevelInfo
	switch code {
	case codes.OK, codes.Canceled:
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable:
		level = slog.LevelError
	default:
		level = slog.LevelWarn
	}
	if auth.IsPublicMethod(method) && code == codes.OK {
		level = slog.LevelDebug // health probes would drown the log
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", time.Since(start)),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	s.logger.LogAttrs(ctx, level, "rpc", attrs...)
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx = logging.WithFields(logging.WithLogger(requestContext(ctx), s.logger))
	start := time.Now()
	resp, err := h(ctx, req)
	s.logCall(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := logging.WithFields(logging.WithLogger(requestContext(ss.Context()), s.logger))
	start := time.Now()
	err := h(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	s.logCall(ctx, info.FullMethod, start, err)
	return err
}

func (s *Server) mapErrorsUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		return nil, apierror.Status(ctx, s.logger, err)
	}
	return resp, nil
}

func (s *Server) mapErrorsStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return apierror.Status(ss.Context(), s.logger, h(srv, ss))
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
