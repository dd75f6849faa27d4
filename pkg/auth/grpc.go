package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/logging"
)

// Metadata keys. The authorization header carries whoever calls; between
// services it carries the calling service's token while CallerHeader carries
// the end caller's, so the end caller's rights still decide what it may see.
const (
	AuthorizationHeader = "authorization"
	CallerHeader        = "x-sluice-caller-authorization"
)

// Caller is the verified identity behind a request.
type Caller struct {
	// Subject, Tenant and Policies are the end caller's.
	Subject  string
	Tenant   string
	Policies []string
	// Service is the subject of the Sluice service that made the call on the
	// caller's behalf, or that called for itself; empty for direct calls.
	Service string
	// token is the end caller's raw token, carried on by outgoing calls.
	token string
}

// Has reports whether the end caller holds policy.
func (c *Caller) Has(policy string) bool {
	return slices.Contains(c.Policies, policy)
}

// IsService reports whether a Sluice service made the call.
func (c *Caller) IsService() bool { return c.Service != "" }

// IsAdmin reports whether the end caller is a Datagrid Administrator or
// Operator.
func (c *Caller) IsAdmin() bool { return c.Has(PolicyAdministrator) || c.Has(PolicyOperator) }

type callerKey struct{}

// WithCaller returns ctx carrying caller.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// FromContext answers the verified caller, if any.
func FromContext(ctx context.Context) (*Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(*Caller)
	return c, ok
}

var errUnauthenticated = apierror.New(codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED,
	"missing bearer token: send `authorization: Bearer <JWT>` (`sluice token` mints one for local use)")

// Require answers the caller or Unauthenticated.
func Require(ctx context.Context) (*Caller, error) {
	c, ok := FromContext(ctx)
	if !ok {
		return nil, errUnauthenticated
	}
	return c, nil
}

// CanSeeTenant reports whether the caller may see resources of tenant. A
// service acting for itself (no end caller) sees every tenant. Handlers answer
// NotFound when it is false, exactly as for a name that does not exist.
func (c *Caller) CanSeeTenant(tenant string) bool {
	if c.Tenant == "" {
		return c.IsService()
	}
	return c.Tenant == tenant
}

// ForItself reports whether a Sluice service calls for itself, with no end
// caller whose rights would narrow what it sees.
func (c *Caller) ForItself() bool { return c.IsService() && c.Tenant == "" }

// Visible answers NotFound, exactly as for a name that does not exist, when
// the caller may not see the tenant of name.
func Visible(ctx context.Context, tenant, name string) error {
	c, err := Require(ctx)
	if err != nil {
		return err
	}
	if !c.CanSeeTenant(tenant) {
		return apierror.NotFound(name)
	}
	return nil
}

// Authenticate verifies the request's tokens and answers the caller. The
// authorization header carries a user's token, or a service's token with
// the end caller's (a user's) in CallerHeader when the service acts for one.
func (v *Verifier) Authenticate(ctx context.Context) (*Caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	raw, err := bearer(md, AuthorizationHeader)
	if err != nil {
		return nil, err
	}
	if raw == "" {
		return nil, errUnauthenticated
	}
	claims, kind, err := v.VerifyContext(ctx, raw)
	if err != nil {
		return nil, apierror.Wrap(err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED, err.Error())
	}
	if kind == UserToken {
		return &Caller{Subject: claims.Subject, Tenant: claims.Tenant, Policies: claims.Policies, token: raw}, nil
	}
	caller := &Caller{Subject: claims.Subject, Service: claims.Subject}
	endRaw, err := bearer(md, CallerHeader)
	if err != nil {
		return nil, err
	}
	if endRaw == "" {
		return caller, nil // the service acts for itself
	}
	end, err := v.VerifyUserContext(ctx, endRaw)
	if err != nil {
		return nil, apierror.Wrap(err, codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED,
			"end caller's token: "+err.Error())
	}
	caller.Subject, caller.Tenant, caller.Policies, caller.token = end.Subject, end.Tenant, end.Policies, endRaw
	return caller, nil
}

func bearer(md metadata.MD, key string) (string, error) {
	vals := md.Get(key)
	if len(vals) == 0 {
		return "", nil
	}
	if len(vals) > 1 {
		return "", apierror.New(codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED, "more than one "+key+" header")
	}
	if len(vals[0]) > MaxTokenBytes+64 {
		return "", apierror.New(codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED,
			fmt.Sprintf("%s is longer than a token may be (%d bytes)", key, MaxTokenBytes))
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) == "" {
		return "", apierror.New(codes.Unauthenticated, errorsv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED,
			key+" must be `Bearer <JWT>`")
	}
	return strings.TrimSpace(tok), nil
}

// Authorizer authenticates every call and applies the method's rule before
// the handler runs; a method without a rule is denied.
type Authorizer struct {
	Verifier *Verifier
	// Rules answers the rule of a full method name.
	Rules func(fullMethod string) Rule
}

func (a Authorizer) authorize(ctx context.Context, method string) (context.Context, error) {
	rule := a.Rules(method)
	if rule == Public {
		return ctx, nil
	}
	if rule == Deny {
		return nil, apierror.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
			"this method has no authorization rule, so it is denied to everyone").With("method", method)
	}
	c, err := a.Verifier.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	// Who called, on every line of the request from here (and on its
	// closing line), refused or not. Subjects and tenants are identities,
	// not secrets; the token never is logged.
	logging.Add(ctx, slog.String("subject", c.Subject), slog.String("tenant", c.Tenant))
	if c.IsService() {
		logging.Add(ctx, slog.String("caller_service", c.Service))
	}
	if err := rule.check(c); err != nil {
		return nil, err
	}
	return WithCaller(ctx, c), nil
}

// UnaryServerInterceptor authenticates and authorizes every unary call.
func (a Authorizer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor does the same for streams.
func (a Authorizer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &callerStream{ServerStream: ss, ctx: ctx})
	}
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

// TokenSource gives the token a service sends as itself.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// ServiceTokens mints and caches a service's own token, renewing it well
// before it expires.
type ServiceTokens struct {
	signer  *Signer
	subject string
	ttl     time.Duration

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// NewServiceTokens mints tokens with the service policy for subject.
func NewServiceTokens(signer *Signer, subject string) *ServiceTokens {
	return &ServiceTokens{signer: signer, subject: subject, ttl: serviceTokenTTL}
}

// Token answers a valid service token.
func (s *ServiceTokens) Token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && time.Now().Before(s.renewAt) {
		return s.token, nil
	}
	tok, err := s.signer.MintService(s.subject, s.ttl)
	if err != nil {
		return "", err
	}
	s.token, s.renewAt = tok, time.Now().Add(s.ttl/2)
	return tok, nil
}

// StaticToken is a token read from configuration.
type StaticToken string

// Token answers the token.
func (t StaticToken) Token(context.Context) (string, error) {
	if t == "" {
		return "", errors.New("no service token configured")
	}
	return string(t), nil
}

type asServiceKey struct{}

// AsService marks ctx so that outgoing calls carry only the service's own
// token, not the end caller's: for checks a service makes for itself, such
// as "does any destination still use this credential?", whose answer must
// not depend on what the caller may see.
func AsService(ctx context.Context) context.Context {
	return context.WithValue(ctx, asServiceKey{}, true)
}

// outgoing sets the service token and, when the context carries an end
// caller, that caller's token on an outgoing call.
func outgoing(ctx context.Context, ts TokenSource) (context.Context, error) {
	tok, err := ts.Token(ctx)
	if err != nil {
		return nil, apierror.Wrap(err, codes.Internal, errorsv1.ErrorReason_ERROR_REASON_INTERNAL, "service token unavailable")
	}
	ctx = metadata.AppendToOutgoingContext(ctx, AuthorizationHeader, "Bearer "+tok)
	if self, _ := ctx.Value(asServiceKey{}).(bool); self {
		return ctx, nil
	}
	if c, ok := FromContext(ctx); ok && c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, CallerHeader, "Bearer "+c.token)
	}
	return ctx, nil
}

// UnaryClientInterceptor carries the service's token and the end caller's
// token on every outgoing unary call.
func UnaryClientInterceptor(ts TokenSource) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, err := outgoing(ctx, ts)
		if err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor does the same for streams.
func StreamClientInterceptor(ts TokenSource) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, err := outgoing(ctx, ts)
		if err != nil {
			return nil, err
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

// BearerCredentials sends a fixed token as per-RPC credentials, for clients
// such as the CLI. It allows plaintext so that loopback development works.
type BearerCredentials string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b BearerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{AuthorizationHeader: "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (BearerCredentials) RequireTransportSecurity() bool { return false }
