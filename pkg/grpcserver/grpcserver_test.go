package grpcserver_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/grpcclient"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/logging"
)

const probe = "sluice.test.v1.Probe"

// probeDesc is a one-method service whose behaviour the request names.
func probeDesc(behave func(ctx context.Context, what string) (any, error)) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: probe,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{probeMethod("Do", behave), probeMethod("Unruled", behave)},
	}
}

func probeMethod(name string, behave func(ctx context.Context, what string) (any, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				return behave(ctx, req.(*wrapperspb.StringValue).GetValue())
			}
			return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + probe + "/" + name}, h)
		},
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

type harness struct {
	addr    string
	signer  *auth.Signer
	conn    *grpc.ClientConn
	token   string
	logs    *syncBuffer
	stop    context.CancelFunc
	served  chan error
	closed  chan struct{}
	release chan struct{}
	entered chan struct{}
}

func start(t *testing.T) *harness {
	t.Helper()
	signer, services := newSigner(t), newSigner(t)
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		UserKeys: []ed25519.PublicKey{signer.PublicKey()}, ServiceKeys: []ed25519.PublicKey{services.PublicKey()},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{logs: &syncBuffer{}, served: make(chan error, 1), closed: make(chan struct{}),
		release: make(chan struct{}), entered: make(chan struct{}, 1)}
	h.signer = signer
	h.token, _ = signer.Mint("alice@acme.test", "acme", nil, time.Hour)
	var peer *grpc.ClientConn // this server dialled as a peer service
	srv, err := grpcserver.New(grpcserver.Config{
		Logger:          logging.New(h.logs, slog.LevelDebug, "test"),
		Verifier:        verifier,
		ShutdownTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.RegisterService(probeDesc(func(ctx context.Context, what string) (any, error) {
		switch what {
		case "panic":
			panic("boom: something broke inside")
		case "notfound":
			return nil, fmt.Errorf("look up thing: %w", apierror.ErrNotFound)
		case "secret":
			return nil, errors.New("connect to db: password=hunter2 rejected")
		case "invalid":
			var v apierror.Violations
			v.Add("thing.name", "is required")
			return nil, v.Err()
		case "whoami":
			c, _ := auth.FromContext(ctx)
			return wrapperspb.String(fmt.Sprintf("subject=%s tenant=%s service=%s", c.Subject, c.Tenant, c.Service)), nil
		case "forward":
			// As the destination service calls the credential service.
			out := new(wrapperspb.StringValue)
			err := peer.Invoke(ctx, "/"+probe+"/Do", wrapperspb.String("whoami"), out)
			return out, err
		case "block":
			h.entered <- struct{}{}
			<-h.release
		}
		return wrapperspb.String("done"), nil
	}), struct{}{}, auth.Rules{"/" + probe + "/Do": auth.AnyCaller}) // Unruled has none
	srv.OnShutdown(closerFunc(func() error { close(h.closed); return nil }))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.served <- srv.Serve(ctx, lis) }()
	h.addr = lis.Addr().String()
	h.conn, err = grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	peer, err = grpcclient.Dial(h.addr, auth.NewServiceTokens(services, "sluice-destination"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	t.Cleanup(func() {
		cancel()
		h.conn.Close()
	})
	return h
}

func newSigner(t *testing.T) *auth.Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return auth.NewSigner(key)
}

func (h *harness) call(ctx context.Context, what string, opts ...grpc.CallOption) (*wrapperspb.StringValue, error) {
	out := new(wrapperspb.StringValue)
	err := h.conn.Invoke(ctx, "/"+probe+"/Do", wrapperspb.String(what), out, opts...)
	return out, err
}

func (h *harness) authed() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+h.token)
}

func TestNoTokenIsUnauthenticated(t *testing.T) {
	h := start(t)
	_, err := h.call(context.Background(), "ok")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("got %v, want Unauthenticated", err)
	}
	if r := apierror.FromStatus(err).Reason; r != errorsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED {
		t.Fatalf("reason %q", r)
	}
	_, err = h.call(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer forged.token.value"), "ok")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("forged token: got %v, want Unauthenticated", err)
	}
	if out, err := h.call(h.authed(), "ok"); err != nil || out.GetValue() != "done" {
		t.Fatalf("with a token: %v, %v", out, err)
	}
}

func TestPanicIsInternalAndServerKeepsServing(t *testing.T) {
	h := start(t)
	_, err := h.call(h.authed(), "panic")
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want Internal", err)
	}
	if strings.Contains(status.Convert(err).Message(), "boom") {
		t.Fatalf("the panic value reached the caller: %q", status.Convert(err).Message())
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "handler panicked") || !strings.Contains(logs, "boom: something broke inside") || !strings.Contains(logs, "goroutine") {
		t.Fatalf("the panic and its stack are not logged:\n%s", logs)
	}
	if out, err := h.call(h.authed(), "ok"); err != nil || out.GetValue() != "done" {
		t.Fatalf("after a panic: %v, %v", out, err)
	}
	resp, err := healthpb.NewHealthClient(h.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: probe})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after a panic: %v, %v", resp, err)
	}
}

func TestErrorMapping(t *testing.T) {
	h := start(t)
	_, err := h.call(h.authed(), "notfound")
	if status.Code(err) != codes.NotFound || apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_NOT_FOUND {
		t.Fatalf("sentinel: got %v, want NotFound", err)
	}

	_, err = h.call(h.authed(), "invalid")
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("violations: got %v, want InvalidArgument", err)
	}
	if v := apierror.FromStatus(err).Violations; len(v) != 1 || v[0].Field != "thing.name" {
		t.Fatalf("want one BadRequest field violation, for thing.name: %v", v)
	}

	_, err = h.call(h.authed(), "secret")
	if status.Code(err) != codes.Internal {
		t.Fatalf("unknown error: got %v, want Internal", err)
	}
	if strings.Contains(status.Convert(err).Message(), "hunter2") {
		t.Fatalf("an internal cause reached the caller: %q", status.Convert(err).Message())
	}
	if !strings.Contains(h.logs.String(), "hunter2") {
		t.Fatal("the internal cause was not logged for the operator")
	}
}

func TestRequestIDIsEchoedAndLogged(t *testing.T) {
	h := start(t)
	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(h.authed(), grpcserver.RequestIDHeader, "req-1234")
	if _, err := h.call(ctx, "ok", grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := header.Get(grpcserver.RequestIDHeader); len(got) != 1 || got[0] != "req-1234" {
		t.Fatalf("request id header = %v", got)
	}
	if !strings.Contains(h.logs.String(), `"request_id":"req-1234"`) {
		t.Fatalf("request id not in the log:\n%s", h.logs.String())
	}
	// An id that is not sane is replaced rather than logged.
	ctx = metadata.AppendToOutgoingContext(h.authed(), grpcserver.RequestIDHeader, "bad id with spaces")
	if _, err := h.call(ctx, "ok", grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if got := header.Get(grpcserver.RequestIDHeader); len(got) != 1 || got[0] == "bad id with spaces" || got[0] == "" {
		t.Fatalf("request id header = %q", got)
	}
}

func TestGracefulShutdownFinishesInFlightCalls(t *testing.T) {
	h := start(t)
	result := make(chan error, 1)
	go func() {
		out, err := h.call(h.authed(), "block")
		if err == nil && out.GetValue() != "done" {
			err = fmt.Errorf("got %q", out.GetValue())
		}
		result <- err
	}()
	watchCtx, endWatch := context.WithCancel(context.Background())
	defer endWatch()
	watch, err := healthpb.NewHealthClient(h.conn).Watch(watchCtx, &healthpb.HealthCheckRequest{Service: probe})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown: %v, %v", first, err)
	}
	<-h.entered
	h.stop() // as SIGTERM does
	// Load balancers watching health learn first, while calls still finish.
	if next, err := watch.Recv(); err != nil || next.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health during shutdown: %v, %v", next, err)
	}
	endWatch() // a watch is an in-flight call too
	select {
	case <-h.closed:
		t.Fatal("stores were closed while a call was in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(h.release)
	if err := <-result; err != nil {
		t.Fatalf("in-flight call during shutdown: %v", err)
	}
	if err := <-h.served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	select {
	case <-h.closed:
	default:
		t.Fatal("closers did not run after shutdown")
	}
}

// A service calling another on a user's behalf sends its own token and the
// user's: the callee sees the user, reached through the service.
func TestPeerCallsCarryTheCallersToken(t *testing.T) {
	h := start(t)
	out, err := h.call(h.authed(), "forward")
	if err != nil {
		t.Fatal(err)
	}
	if want := "subject=alice@acme.test tenant=acme service=sluice-destination"; out.GetValue() != want {
		t.Fatalf("callee saw %q, want %q", out.GetValue(), want)
	}
	direct, err := h.call(h.authed(), "whoami")
	if err != nil {
		t.Fatal(err)
	}
	if want := "subject=alice@acme.test tenant=acme service="; direct.GetValue() != want {
		t.Fatalf("direct call saw %q, want %q", direct.GetValue(), want)
	}
}

// Issue 9, item 5: a method nobody gave a rule is denied, even to an
// administrator.
func TestMethodWithoutRuleIsDenied(t *testing.T) {
	h := start(t)
	out := new(wrapperspb.StringValue)
	err := h.conn.Invoke(h.authed(), "/"+probe+"/Unruled", wrapperspb.String("whoami"), out)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Unruled: %v, want PermissionDenied", err)
	}
	if _, err := h.call(h.authed(), "whoami"); err != nil {
		t.Fatalf("Do, which has a rule: %v", err)
	}
}

// Issue 9, item 11: a string that is not UTF-8 fails to decode before any
// interceptor runs; it must answer InvalidArgument, and be logged, not
// Internal.
func TestUndecodableRequestIsInvalidArgument(t *testing.T) {
	h := start(t)
	// BytesValue and StringValue share field 1: the server decodes these
	// bytes as a string that is not UTF-8.
	out := new(wrapperspb.StringValue)
	err := h.conn.Invoke(h.authed(), "/"+probe+"/Do", wrapperspb.Bytes([]byte{0xff, 0xfe, 'x'}), out)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(violationText(err), "UTF-8") {
		t.Fatalf("got %v, want InvalidArgument naming UTF-8", err)
	}
	if !strings.Contains(h.logs.String(), `"code":"InvalidArgument"`) {
		t.Fatalf("the refused request was not logged:\n%s", h.logs.String())
	}
	if _, err := h.call(h.authed(), "whoami"); err != nil {
		t.Fatalf("next call: %v", err)
	}
}

// Issue 9, item 8: every string field is capped before a handler reads it.
func TestOversizedFieldIsInvalidArgument(t *testing.T) {
	h := start(t)
	_, err := h.call(h.authed(), strings.Repeat("x", 5000))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(violationText(err), "value: must be at most 4096 bytes") {
		t.Fatalf("got %v", err)
	}
}

// Issue 9, item 7: 16 KiB of headers at most; a caller sending more is
// refused without costing the server the decoding, and the server serves on.
func TestHeaderListIsBounded(t *testing.T) {
	h := start(t)
	big := metadata.AppendToOutgoingContext(h.authed(), "x-padding", strings.Repeat("p", 32<<10))
	if _, err := h.call(big, "whoami"); err == nil {
		t.Fatal("a 32 KiB header was accepted")
	}
	if _, err := h.call(h.authed(), "whoami"); err != nil {
		t.Fatalf("next call: %v", err)
	}
}

func violationText(err error) string {
	var b strings.Builder
	for _, v := range apierror.FromStatus(err).Violations {
		fmt.Fprintf(&b, "%s: %s\n", v.Field, v.Description)
	}
	return b.String()
}
