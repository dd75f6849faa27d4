package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/services/console"
	"github.com/sluicehq/sluice/services/credential"
	"github.com/sluicehq/sluice/services/delivery"
	"github.com/sluicehq/sluice/services/destination"
)

// serveConfig is what `sluice serve` runs.
type serveConfig struct {
	launch.Common
	CredentialAddr, DestinationAddr, DeliveryAddr string
	// ConsoleAddr is where the web console listens; empty for none.
	ConsoleAddr                             string
	Console                                 console.Config
	CredentialDB, DestinationDB, DeliveryDB string
	Credential                              credential.Config
	Delivery                                delivery.Config
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		Common:          launch.DefaultCommon(),
		CredentialAddr:  "127.0.0.1:7401",
		DestinationAddr: "127.0.0.1:7402",
		DeliveryAddr:    "127.0.0.1:7403",
		ConsoleAddr:     "127.0.0.1:7404",
		Delivery:        delivery.DefaultConfig(),
	}
}

func (c *serveConfig) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	c.Common.AddFlags(fs)
	fs.StringVar(&c.CredentialAddr, "credential-addr", c.CredentialAddr, "address of the credential service (port 0 picks one)")
	fs.StringVar(&c.DestinationAddr, "destination-addr", c.DestinationAddr, "address of the destination service")
	fs.StringVar(&c.DeliveryAddr, "delivery-addr", c.DeliveryAddr, "address of the delivery service")
	fs.StringVar(&c.ConsoleAddr, "console-addr", c.ConsoleAddr, "address of the web console (HTTP; empty for none)")
	c.Console.AddFlags(fs)
	fs.StringVar(&c.CredentialDB, "credential-db", "", "credential database: PostgreSQL URL or sqlite:PATH (default sqlite:{data-dir}/credential.db)")
	fs.StringVar(&c.DestinationDB, "destination-db", "", "destination database (default sqlite:{data-dir}/destination.db)")
	fs.StringVar(&c.DeliveryDB, "delivery-db", "", "delivery database (default sqlite:{data-dir}/delivery.db)")
	c.Credential.AddFlags(fs)
	c.Delivery.AddFlags(fs)
}

// useMinIO points the services' S3 and access-key sessions at a local
// MinIO, as the demo and the tests run them.
func (c *serveConfig) useMinIO(m *localserver.MinIO) {
	c.Credential.AWS.S3URL, c.Credential.AWS.S3PathStyle, c.Credential.AWS.Region = m.Endpoint, true, m.Region
	c.Credential.AWS.CABundle = m.CAFile // set when MinIO serves HTTPS
	c.Credential.AccessKeySessions, c.Credential.AccessKeySTSURL = credential.AssumeRole, m.Endpoint
}

func serveCommand() *cobra.Command {
	cfg := defaultServeConfig()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the credential, destination and delivery services in one process",
		Long: `Runs the three services in one process, each on its own 127.0.0.1 port,
wired to each other through real gRPC connections. State lives under
--data-dir (SQLite by default). Stops gracefully on SIGINT or SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, func(sv serving) { printEndpoints(cmd.OutOrStdout(), cfg.DataDir, sv) })
		},
	}
	cfg.addFlags(cmd)
	return cmd
}

// serving is what serve started, for whoever waits for it.
type serving struct {
	eps []launch.Endpoint
	env *launch.Env
	// console is the web console's URL; empty when it is off.
	console string
}

func printEndpoints(w io.Writer, dataDir string, sv serving) {
	fmt.Fprintln(w, "Sluice is serving:")
	for _, ep := range sv.eps {
		fmt.Fprintf(w, "  %-12s %s\n", ep.Name, ep.Listener.Addr())
	}
	if sv.console != "" {
		fmt.Fprintf(w, "  %-12s %s\n", "console", sv.console)
	}
	if a := sv.env.MetricsAddr(); a != nil {
		fmt.Fprintf(w, "  %-12s http://%s/metrics\n", "metrics", a)
	}
	if sv.console != "" && sv.env.DevUsers != nil {
		fmt.Fprintf(w, "Log in to the console (development login, this machine only): %s/login\n", sv.console)
	}
	fmt.Fprintf(w, "Mint a token with: sluice token --data-dir %s --tenant acme --subject you@acme.test\n", dataDir)
}

// serve starts the three services, calls ready with their endpoints once all
// listen, and serves until ctx ends. Shutdown goes from callers to callees:
// delivery, then destination, then credential, so that calls still in
// flight can reach the services they need.
func serve(ctx context.Context, cfg serveConfig, ready func(serving)) (err error) {
	env, err := launch.Setup(ctx, cfg.Common, "sluice")
	if err != nil {
		return err
	}
	defer func() {
		if cerr := env.Close(); err == nil {
			err = cerr
		}
	}()
	eps, err := buildServices(ctx, env, cfg)
	if err != nil {
		return err
	}
	sv := serving{eps: eps, env: env}
	if cfg.ConsoleAddr != "" {
		stop, url, err := startConsole(env, cfg, eps)
		if err != nil {
			for _, ep := range eps {
				ep.Server.Shutdown()
			}
			return fmt.Errorf("console: %w", err)
		}
		// The console calls the services: it stops first.
		defer stop()
		ctx = withStop(ctx, stop)
		sv.console = url
	}
	if ready != nil {
		ready(sv)
	}
	return launch.Serve(ctx, eps)
}

// startConsole serves the web console beside the services, answering how
// to stop it and its URL.
func startConsole(env *launch.Env, cfg serveConfig, eps []launch.Endpoint) (func(), string, error) {
	addrs := console.Addrs{}
	for _, ep := range eps {
		switch ep.Name {
		case "credential":
			addrs.Credential = addr(ep)
		case "destination":
			addrs.Destination = addr(ep)
		case "delivery":
			addrs.Delivery = addr(ep)
		}
	}
	s, closers, err := console.Build(env, cfg.Console, addrs)
	closeAll := func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}
	if err != nil {
		closeAll()
		return nil, "", err
	}
	lis, err := env.Listen(cfg.ConsoleAddr)
	if err != nil {
		closeAll()
		return nil, "", err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			defer cancel()
			_ = srv.Shutdown(ctx)
			closeAll()
		})
	}, "http://" + lis.Addr().String(), nil
}

// withStop answers ctx, after whose end stop runs before anything else
// shuts down.
func withStop(ctx context.Context, stop func()) context.Context {
	out, cancel := context.WithCancel(context.Background())
	go func() {
		<-ctx.Done()
		stop()
		cancel()
	}()
	return out
}

// buildServices listens on the three addresses first, so that each service
// can dial the others' real addresses (port 0 included), then builds each
// with the builder its own binary uses. Every listener, connection and
// store goes onto its server's shutdown list as it is opened. The
// endpoints are answered in shutdown order.
func buildServices(ctx context.Context, env *launch.Env, cfg serveConfig) (eps []launch.Endpoint, err error) {
	defer func() {
		if err != nil {
			for _, ep := range eps {
				ep.Server.Shutdown()
			}
		}
	}()
	for _, sv := range []struct {
		name, addr string
		opts       []func(*grpcserver.Config)
	}{
		{"delivery", cfg.DeliveryAddr, []func(*grpcserver.Config){delivery.ServerConfig}},
		{"destination", cfg.DestinationAddr, nil},
		{"credential", cfg.CredentialAddr, nil},
	} {
		srv, err := env.NewServer(sv.name, sv.opts...)
		if err != nil {
			return eps, err
		}
		lis, err := env.Listen(sv.addr)
		if err != nil {
			srv.Shutdown()
			return eps, fmt.Errorf("%s: %w", sv.name, err)
		}
		srv.OnShutdown(launch.ListenerCloser{Listener: lis})
		eps = append(eps, launch.Endpoint{Name: sv.name, Server: srv, Listener: lis})
	}
	deliv, dest, cred := eps[0], eps[1], eps[2]
	credCfg := cfg.Credential
	credCfg.DatabaseDSN = cfg.CredentialDB
	if err := credential.Build(ctx, env, cred.Server, credCfg, addr(dest)); err != nil {
		return eps, fmt.Errorf("credential: %w", err)
	}
	destCfg := destination.Config{DatabaseDSN: cfg.DestinationDB, AWS: cfg.Credential.AWS}
	if err := destination.Build(ctx, env, dest.Server, destCfg, addr(cred)); err != nil {
		return eps, fmt.Errorf("destination: %w", err)
	}
	delivCfg := cfg.Delivery
	delivCfg.DatabaseDSN, delivCfg.AWS = cfg.DeliveryDB, cfg.Credential.AWS
	// The flags are the credential service's: KMS seals webhook secrets
	// too; a local key is the delivery service's own file.
	delivCfg.Events.KMSKeyID = cfg.Credential.KMSKeyID
	if err := delivery.Build(ctx, env, deliv.Server, delivCfg, addr(dest), addr(cred)); err != nil {
		return eps, fmt.Errorf("delivery: %w", err)
	}
	return eps, nil
}

func addr(ep launch.Endpoint) string { return ep.Listener.Addr().String() }
