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
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/grpcclient"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/telemetry"
)

// Common are the settings every service process has.
type Common struct {
	// DataDir holds SQLite databases and the development signing key.
	DataDir string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// SigningKey is an Ed25519 private key (PEM, PKCS #8). Services mint
	// their own service tokens with it and trust its public half.
	SigningKey string
	// PublicKeys are files of trusted Ed25519 public keys for callers'
	// tokens.
	PublicKeys []string
	// ServiceTokenFile holds this service's own token, for deployments
	// where an issuer outside Sluice mints it.
	ServiceTokenFile string
	// ShutdownTimeout bounds the graceful stop.
	ShutdownTimeout time.Duration
}

// DefaultCommon answers the defaults: state under ./.data, info logs.
func DefaultCommon() Common {
	return Common{DataDir: ".data", LogLevel: "info", ShutdownTimeout: 15 * time.Second}
}

// AddFlags registers the common flags on fs.
func (c *Common) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for SQLite databases and the development signing key")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.StringVar(&c.SigningKey, "signing-key", c.SigningKey, "Ed25519 private key (PEM) to mint service tokens with; its public key is trusted (default: {data-dir}/keys/signing.pem when no --jwt-public-key is given)")
	fs.StringSliceVar(&c.PublicKeys, "jwt-public-key", c.PublicKeys, "file of trusted Ed25519 public keys (PEM) for caller tokens; repeatable")
	fs.StringVar(&c.ServiceTokenFile, "service-token-file", c.ServiceTokenFile, "file holding this service's own token, when another issuer mints it")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight calls may finish after SIGTERM")
}

// DevSigningKeyPath is the development key used when no keys are configured.
func DevSigningKeyPath(dataDir string) string {
	return filepath.Join(dataDir, "keys", "signing.pem")
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
	// Tokens gives this process's service token; nil when it can mint none.
	Tokens auth.TokenSource
	// Signer is set when a signing key is configured.
	Signer          *auth.Signer
	shutdownTimeout time.Duration
	flushTelemetry  func(context.Context) error
}

// Setup builds the logger, telemetry and identity for a process named
// service (e.g. `sluice-credential`).
func Setup(ctx context.Context, c Common, service string) (*Env, error) {
	logger := logging.New(os.Stderr, logging.ParseLevel(c.LogLevel), service)
	flush, err := telemetry.Setup(ctx, service)
	if err != nil {
		return nil, err
	}
	e := &Env{Logger: logger, shutdownTimeout: c.ShutdownTimeout, flushTelemetry: flush}

	keys, err := c.trustedKeys()
	if err != nil {
		return nil, err
	}
	signingKey := c.SigningKey
	if signingKey == "" && len(c.PublicKeys) == 0 {
		signingKey = DevSigningKeyPath(c.DataDir)
		logger.Warn("no --jwt-public-key or --signing-key given: using the development signing key; mint tokens with `sluice token`",
			slog.String("key", signingKey))
	}
	if signingKey != "" {
		key, err := auth.LoadOrCreateSigningKey(signingKey)
		if err != nil {
			return nil, err
		}
		e.Signer = auth.NewSigner(key)
		keys = append(keys, e.Signer.PublicKey())
		e.Tokens = auth.NewServiceTokens(e.Signer, service)
	}
	if c.ServiceTokenFile != "" {
		b, err := os.ReadFile(c.ServiceTokenFile)
		if err != nil {
			return nil, fmt.Errorf("read service token: %w", err)
		}
		e.Tokens = auth.StaticToken(strings.TrimSpace(string(b)))
	}
	e.Verifier = auth.NewVerifier(keys...)
	return e, nil
}

func (c Common) trustedKeys() ([]ed25519.PublicKey, error) {
	if len(c.PublicKeys) == 0 {
		return nil, nil
	}
	return auth.LoadPublicKeys(c.PublicKeys...)
}

// NewServer builds a gRPC server for component (e.g. `credential`) with the
// process's logger and identity.
func (e *Env) NewServer(component string) (*grpcserver.Server, error) {
	return grpcserver.New(grpcserver.Config{
		Logger:          e.Logger.With(slog.String("component", component)),
		Verifier:        e.Verifier,
		ShutdownTimeout: e.shutdownTimeout,
	})
}

// Dial connects to a peer service, sending this process's service token
// and the end caller's token on.
func (e *Env) Dial(target string) (*grpc.ClientConn, error) {
	if e.Tokens == nil {
		return nil, errors.New("calling other services needs a service token: configure --signing-key or --service-token-file")
	}
	return grpcclient.Dial(target, e.Tokens, nil)
}

// Close flushes telemetry.
func (e *Env) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.flushTelemetry(ctx)
}

// Listen opens a TCP listener on addr (host:port; port 0 picks one).
func Listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return lis, nil
}

// Endpoint is one server of a process and where it listens.
type Endpoint struct {
	// Name says what serves there, e.g. `credential`.
	Name     string
	Server   *grpcserver.Server
	Listener net.Listener
}

// Serve serves every endpoint until ctx ends or one fails, then shuts all of
// them down in order (NOT_SERVING, bounded graceful stop, closers).
func Serve(ctx context.Context, endpoints []Endpoint) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(endpoints))
	for _, ep := range endpoints {
		go func() {
			err := ep.Server.Serve(ctx, ep.Listener)
			if err != nil {
				err = fmt.Errorf("%s: %w", ep.Name, err)
			}
			cancel() // one server ending ends the process
			errc <- err
		}()
	}
	var errs []error
	for range endpoints {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
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
	// Build creates the service and registers it on srv.
	Build func(ctx context.Context, env *Env, common Common, srv *grpcserver.Server) error
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
	srv, err := env.NewServer(s.Name)
	if err != nil {
		return err
	}
	if err := s.Build(ctx, env, common, srv); err != nil {
		return err
	}
	lis, err := Listen(addr)
	if err != nil {
		return err
	}
	env.Logger.Info("serving", slog.String("addr", lis.Addr().String()))
	return Serve(ctx, []Endpoint{{Name: s.Name, Server: srv, Listener: lis}})
}

// SQLiteDSN answers the default database of a service under dataDir.
func SQLiteDSN(dataDir, service string) string {
	return "sqlite:" + filepath.Join(dataDir, service+".db")
}
