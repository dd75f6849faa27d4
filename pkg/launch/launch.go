// Package launch is what every Sluice service process does before and
// after its handlers: settings from flags and SLUICE_* environment
// variables, logging, telemetry, caller identity, listening, and shutdown on
// SIGTERM.
package launch

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/grpcclient"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/mtls"
	"github.com/sluicehq/sluice/pkg/telemetry"
)

// Common are the settings every service process has.
type Common struct {
	// DataDir holds SQLite databases and the development keys.
	DataDir string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// PublicKeys are files of trusted Ed25519 public keys for users'
	// tokens (the identity provider's). None means development mode: a
	// local user key that `sluice token` signs with.
	PublicKeys []string
	// Issuer trusts an OpenID provider's tokens for users (--jwt-issuer).
	Issuer auth.IssuerConfig
	// MaxTokenLifetime refuses user tokens that live longer (exp - iat).
	MaxTokenLifetime time.Duration
	// SigningKey is the Ed25519 private key (PEM, PKCS #8) services mint
	// their own tokens with; its public half is trusted for service tokens
	// only. Default {data-dir}/keys/service.pem, created on first start.
	SigningKey string
	// ServicePublicKeys are more keys trusted for service tokens, e.g. the
	// issuer of a --service-token-file.
	ServicePublicKeys []string
	// ServiceTokenFile holds this service's own token, for deployments
	// where an issuer outside Sluice mints it.
	ServiceTokenFile string
	// ShutdownTimeout bounds the graceful stop.
	ShutdownTimeout time.Duration
	// MetricsAddr is where /metrics is served over HTTP for Prometheus;
	// empty for nowhere (OTLP export still runs when configured).
	MetricsAddr string
	// Pprof serves Go's profiles at /debug/pprof/ beside /metrics, for
	// finding where a process's time goes (sluice-bench's per-stage
	// profile reads them).
	Pprof bool
	// Telemetry adds span processors and metric readers (tests keep
	// spans and metrics in memory); not a flag.
	Telemetry telemetry.Options
	// LogOutput receives the logs instead of stderr (tests read them);
	// not a flag.
	LogOutput io.Writer
	// TLS is mutual TLS between the services; without it they listen
	// on loopback only.
	TLS mtls.Config
}

// DefaultCommon answers the defaults: state under ./.data, info logs.
func DefaultCommon() Common {
	return Common{DataDir: ".data", LogLevel: "info", ShutdownTimeout: 15 * time.Second, MaxTokenLifetime: auth.DefaultMaxUserLifetime,
		Issuer: auth.IssuerConfig{Audience: "sluice", TenantClaim: "tenant", PoliciesClaim: "policies"}}
}

// AddFlags registers the common flags on fs.
func (c *Common) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for SQLite databases and the development keys")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.StringSliceVar(&c.PublicKeys, "jwt-public-key", c.PublicKeys, "file of Ed25519 public keys (PEM) trusted for users' tokens; repeatable (default: the development user key {data-dir}/keys/dev-user.pem)")
	fs.StringVar(&c.Issuer.URL, "jwt-issuer", c.Issuer.URL, "URL of an OpenID provider whose tokens are trusted for users (discovery, and its JWKS fetched again when it rotates keys; RS256, ES256 or EdDSA), beside --jwt-public-key")
	fs.StringVar(&c.Issuer.Audience, "jwt-audience", c.Issuer.Audience, "the audience --jwt-issuer's tokens must carry")
	fs.StringVar(&c.Issuer.TenantClaim, "jwt-tenant-claim", c.Issuer.TenantClaim, "the claim of --jwt-issuer's tokens that names the caller's tenant")
	fs.StringVar(&c.Issuer.PoliciesClaim, "jwt-policies-claim", c.Issuer.PoliciesClaim, "the claim of --jwt-issuer's tokens that lists the caller's policies (a list, or a space-separated string)")
	fs.DurationVar(&c.MaxTokenLifetime, "max-token-lifetime", c.MaxTokenLifetime, "refuse user tokens whose lifetime (exp - iat) is longer")
	fs.StringVar(&c.SigningKey, "signing-key", c.SigningKey, "Ed25519 private key (PEM) services mint their own tokens with; trusted for service tokens only (default {data-dir}/keys/service.pem)")
	fs.StringSliceVar(&c.ServicePublicKeys, "service-public-key", c.ServicePublicKeys, "file of more Ed25519 public keys trusted for service tokens; repeatable")
	fs.StringVar(&c.ServiceTokenFile, "service-token-file", c.ServiceTokenFile, "file holding this service's own token, when another issuer mints it")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight calls may finish after SIGTERM")
	c.TLS.AddFlags(fs)
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "address to serve Prometheus metrics on, at /metrics (e.g. 127.0.0.1:9464; empty for none)")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "also serve Go's profiles at /debug/pprof/ on --metrics-addr (they show the process's internals: keep that address private)")
}

// DevUserKeyPath is the development key users' tokens are signed with when
// no --jwt-public-key is configured; `sluice token` signs with it.
func DevUserKeyPath(dataDir string) string {
	return filepath.Join(dataDir, "keys", "dev-user.pem")
}

// ServiceKeyPath is the default key services sign their own tokens with.
func ServiceKeyPath(dataDir string) string {
	return filepath.Join(dataDir, "keys", "service.pem")
}

// ApplyEnv sets every flag not given on the command line from the
// environment variable SLUICE_{FLAG_NAME} (dashes as underscores), so that
// containers are configured by environment.
func ApplyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		key := "SLUICE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
		}
	})
	return errors.Join(errs...)
}

// Env is a set-up process: its logger, identity and telemetry.
type Env struct {
	Logger   *slog.Logger
	Verifier *auth.Verifier
	// Tokens gives this process's service token.
	Tokens auth.TokenSource
	// DataDir is the process's data directory.
	DataDir string
	// TLS is the process's mutual TLS, when configured.
	TLS mtls.Config
	// Telemetry is the process's tracer and meter providers.
	Telemetry *telemetry.Telemetry
	// DevUsers signs user tokens with the development key, when the
	// process trusts it (neither --jwt-public-key nor --jwt-issuer):
	// `sluice token` and the console's development login.
	DevUsers        *auth.Signer
	shutdownTimeout time.Duration
	metrics         *http.Server
	metricsLis      net.Listener
}

// Setup builds the logger, telemetry and identity for a process named
// service (e.g. `sluice-credential`).
func Setup(ctx context.Context, c Common, service string) (*Env, error) {
	var out io.Writer = os.Stderr
	if c.LogOutput != nil {
		out = c.LogOutput
	}
	logger := logging.New(out, logging.ParseLevel(c.LogLevel), service)
	topts := c.Telemetry
	topts.ServiceName = service
	if topts.Instance == "" {
		topts.Instance, _ = os.Hostname()
	}
	tel, err := telemetry.Setup(ctx, topts)
	if err != nil {
		return nil, err
	}
	if err := c.TLS.Check(); err != nil {
		_ = tel.Shutdown(ctx)
		return nil, err
	}
	e := &Env{Logger: logger, DataDir: c.DataDir, shutdownTimeout: c.ShutdownTimeout, Telemetry: tel, TLS: c.TLS}
	if c.Pprof && c.MetricsAddr == "" {
		_ = tel.Shutdown(ctx)
		return nil, fmt.Errorf("--pprof serves on --metrics-addr: set it too")
	}
	if c.MetricsAddr != "" {
		if e.metricsLis, err = Listen(c.MetricsAddr); err != nil {
			_ = tel.Shutdown(ctx)
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", tel.Metrics)
		if c.Pprof {
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		}
		e.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = e.metrics.Serve(e.metricsLis) }()
		logger.Info("serving metrics", slog.String("addr", "http://"+e.metricsLis.Addr().String()+"/metrics"))
	}

	var userKeys []ed25519.PublicKey
	if len(c.PublicKeys) > 0 {
		if userKeys, err = auth.LoadPublicKeys(c.PublicKeys...); err != nil {
			return nil, fmt.Errorf("--jwt-public-key: %w", err)
		}
	} else if c.Issuer.URL == "" {
		path := DevUserKeyPath(c.DataDir)
		key, err := auth.LoadOrCreateSigningKey(path)
		if err != nil {
			return nil, err
		}
		userKeys = append(userKeys, key.Public().(ed25519.PublicKey))
		e.DevUsers = auth.NewSigner(key)
		logger.Warn("no --jwt-public-key given: trusting the development user key; mint tokens with `sluice token`",
			slog.String("key", path))
	}
	signingKey := c.SigningKey
	if signingKey == "" {
		signingKey = ServiceKeyPath(c.DataDir)
	}
	key, err := auth.LoadOrCreateSigningKey(signingKey)
	if err != nil {
		return nil, err
	}
	signer := auth.NewSigner(key)
	serviceKeys := []ed25519.PublicKey{signer.PublicKey()}
	if len(c.ServicePublicKeys) > 0 {
		more, err := auth.LoadPublicKeys(c.ServicePublicKeys...)
		if err != nil {
			return nil, fmt.Errorf("--service-public-key: %w", err)
		}
		serviceKeys = append(serviceKeys, more...)
	}
	e.Tokens = auth.NewServiceTokens(signer, service)
	if c.ServiceTokenFile != "" {
		b, err := os.ReadFile(c.ServiceTokenFile)
		if err != nil {
			return nil, fmt.Errorf("read service token: %w", err)
		}
		e.Tokens = auth.StaticToken(strings.TrimSpace(string(b)))
	}
	var issuer *auth.IssuerConfig
	if c.Issuer.URL != "" {
		issuer = &c.Issuer
		logger.Info("trusting an OpenID provider's tokens for users", slog.String("issuer", c.Issuer.URL), slog.String("audience", c.Issuer.Audience))
	}
	e.Verifier, err = auth.NewVerifier(auth.VerifierConfig{
		UserKeys: userKeys, ServiceKeys: serviceKeys, MaxUserLifetime: c.MaxTokenLifetime, Issuer: issuer,
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// NewServer builds a gRPC server for component (e.g. `credential`) with the
// process's logger and identity.
func (e *Env) NewServer(component string, opts ...func(*grpcserver.Config)) (*grpcserver.Server, error) {
	cfg := grpcserver.Config{
		Logger:          e.Logger.With(slog.String("component", component)),
		Verifier:        e.Verifier,
		ShutdownTimeout: e.shutdownTimeout,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if e.TLS.Enabled() {
		creds, err := e.TLS.Server()
		if err != nil {
			return nil, err
		}
		cfg.ServerOptions = append(cfg.ServerOptions, grpc.Creds(creds))
	}
	return grpcserver.New(cfg)
}

// Dial connects to the peer service (credential, destination or
// delivery) at target, sending this process's service token and the end
// caller's token on; with TLS, the peer must prove it is that service.
func (e *Env) Dial(target, service string) (*grpc.ClientConn, error) {
	if e.Tokens == nil {
		return nil, errors.New("calling other services needs a service token: configure --signing-key or --service-token-file")
	}
	var creds credentials.TransportCredentials
	if e.TLS.Enabled() {
		var err error
		if creds, err = e.TLS.Client(service); err != nil {
			return nil, err
		}
	}
	return grpcclient.Dial(target, e.Tokens, creds)
}

// DialForUser connects to a service for a client that calls with its
// user's own token on each call (the console), never with a service
// token: it holds no authority of its own. With TLS, the peer must prove
// it is that service.
func (e *Env) DialForUser(target, service string) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if e.TLS.Enabled() {
		var err error
		if creds, err = e.TLS.Client(service); err != nil {
			return nil, err
		}
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds), grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithChainUnaryInterceptor(grpcclient.Bounded(grpcclient.CallTimeout)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return cc, nil
}

// Listen opens a TCP listener on addr for a server of this process:
// plaintext is refused anywhere but loopback, where no one else listens in.
func (e *Env) Listen(addr string) (net.Listener, error) {
	if !e.TLS.Enabled() && !mtls.Loopback(addr) {
		return nil, fmt.Errorf("listen on %s: plaintext gRPC is only served on loopback; configure --tls-cert, --tls-key and --tls-ca (sluice certs makes development ones)", addr)
	}
	return Listen(addr)
}

// MetricsAddr answers where /metrics is served, or nil.
func (e *Env) MetricsAddr() net.Addr {
	if e.metricsLis == nil {
		return nil
	}
	return e.metricsLis.Addr()
}

// Close stops serving metrics and flushes telemetry.
func (e *Env) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	if e.metrics != nil {
		errs = append(errs, e.metrics.Shutdown(ctx))
	}
	return errors.Join(append(errs, e.Telemetry.Shutdown(ctx))...)
}

// Listen opens a TCP listener on addr (host:port; port 0 picks one).
func Listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return lis, nil
}

// ListenerCloser closes a listener on shutdown, whether or not serving
// already closed it (gRPC closes its listener when it stops).
type ListenerCloser struct{ net.Listener }

// Close closes the listener; one already closed is not an error.
func (l ListenerCloser) Close() error {
	if err := l.Listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Endpoint is one server of a process and where it listens.
type Endpoint struct {
	// Name says what serves there, e.g. `credential`.
	Name     string
	Server   *grpcserver.Server
	Listener net.Listener
}

// Serve serves every endpoint until ctx ends or one fails, then shuts them
// down one after another in the order given (NOT_SERVING, bounded graceful
// stop, closers): list callers before the services they call, so that a
// service still finishing calls can reach its peers.
func Serve(ctx context.Context, endpoints []Endpoint) error {
	done := make([]<-chan error, len(endpoints))
	failed := make(chan struct{}, len(endpoints))
	results := make([]error, len(endpoints))
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		errc := ep.Server.Start(ep.Listener)
		done[i] = errc
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := <-errc; err != nil {
				results[i] = fmt.Errorf("%s: %w", ep.Name, err)
			}
			failed <- struct{}{} // one server ending ends the process
		}()
	}
	select {
	case <-ctx.Done():
	case <-failed:
	}
	for _, ep := range endpoints {
		ep.Server.Shutdown()
	}
	wg.Wait()
	return errors.Join(results...)
}

// Service describes a service binary for RunService.
type Service struct {
	// Name is the component, e.g. `credential`; the process is
	// `sluice-{name}`.
	Name string
	// Addr is the default listen address.
	Addr string
	// Flags registers the service's own flags.
	Flags func(fs *pflag.FlagSet)
	// Build creates the service and registers it on srv, putting whatever
	// it opens on srv's shutdown list.
	Build func(ctx context.Context, env *Env, srv *grpcserver.Server) error
	// Server adjusts the server's configuration (message limits).
	Server func(*grpcserver.Config)
}

// RunService is a service binary's whole main: flags and SLUICE_*
// variables, setup, build, serve until SIGINT or SIGTERM, orderly shutdown.
// It answers the process exit code.
func RunService(s Service, args []string) int {
	common := DefaultCommon()
	addr := s.Addr
	fs := pflag.NewFlagSet("sluice-"+s.Name, pflag.ContinueOnError)
	common.AddFlags(fs)
	fs.StringVar(&addr, "listen", addr, "address to serve gRPC on")
	if s.Flags != nil {
		s.Flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := ApplyEnv(fs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runService(ctx, s, common, addr); err != nil {
		fmt.Fprintf(os.Stderr, "sluice-%s: %v\n", s.Name, err)
		return 1
	}
	return 0
}

func runService(ctx context.Context, s Service, common Common, addr string) (err error) {
	env, err := Setup(ctx, common, "sluice-"+s.Name)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := env.Close(); err == nil {
			err = cerr
		}
	}()
	var opts []func(*grpcserver.Config)
	if s.Server != nil {
		opts = append(opts, s.Server)
	}
	srv, err := env.NewServer(s.Name, opts...)
	if err != nil {
		return err
	}
	lis, err := env.Listen(addr)
	if err != nil {
		return err
	}
	srv.OnShutdown(ListenerCloser{Listener: lis})
	if err := s.Build(ctx, env, srv); err != nil {
		srv.Shutdown()
		return err
	}
	env.Logger.Info("serving", slog.String("addr", lis.Addr().String()))
	return Serve(ctx, []Endpoint{{Name: s.Name, Server: srv, Listener: lis}})
}

// SQLiteDSN answers the default database of a service under dataDir.
func SQLiteDSN(dataDir, service string) string {
	return "sqlite:" + filepath.Join(dataDir, service+".db")
}

// OrSQLite answers dsn, or the service's default SQLite database under
// dataDir when dsn is empty.
func OrSQLite(dsn, dataDir, service string) string {
	if dsn != "" {
		return dsn
	}
	return SQLiteDSN(dataDir, service)
}
