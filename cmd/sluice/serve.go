package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/services/credential"
	"github.com/sluicehq/sluice/services/delivery"
	"github.com/sluicehq/sluice/services/destination"
)

// serveConfig is what `sluice serve` runs.
type serveConfig struct {
	launch.Common
	CredentialAddr, DestinationAddr, DeliveryAddr string
	CredentialDB, DestinationDB, DeliveryDB       string
	Credential                                    credential.Config
}

func defaultServeConfig() serveConfig {
	return serveConfig{
		Common:          launch.DefaultCommon(),
		CredentialAddr:  "127.0.0.1:7401",
		DestinationAddr: "127.0.0.1:7402",
		DeliveryAddr:    "127.0.0.1:7403",
	}
}

func (c *serveConfig) addFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	c.Common.AddFlags(fs)
	fs.StringVar(&c.CredentialAddr, "credential-addr", c.CredentialAddr, "address of the credential service (port 0 picks one)")
	fs.StringVar(&c.DestinationAddr, "destination-addr", c.DestinationAddr, "address of the destination service")
	fs.StringVar(&c.DeliveryAddr, "delivery-addr", c.DeliveryAddr, "address of the delivery service")
	fs.StringVar(&c.CredentialDB, "credential-db", "", "credential database: PostgreSQL URL or sqlite:PATH (default sqlite:{data-dir}/credential.db)")
	fs.StringVar(&c.DestinationDB, "destination-db", "", "destination database (default sqlite:{data-dir}/destination.db)")
	fs.StringVar(&c.DeliveryDB, "delivery-db", "", "delivery database (default sqlite:{data-dir}/delivery.db)")
	c.Credential.AddFlags(fs)
}

func orSQLite(dsn, dataDir, name string) string {
	if dsn != "" {
		return dsn
	}
	return launch.SQLiteDSN(dataDir, name)
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
			return serve(ctx, cfg, func(eps []launch.Endpoint) { printEndpoints(cmd.OutOrStdout(), cfg.DataDir, eps) })
		},
	}
	cfg.addFlags(cmd)
	return cmd
}

func printEndpoints(w io.Writer, dataDir string, eps []launch.Endpoint) {
	fmt.Fprintln(w, "Sluice is serving:")
	for _, ep := range eps {
		fmt.Fprintf(w, "  %-12s %s\n", ep.Name, ep.Listener.Addr())
	}
	fmt.Fprintf(w, "Mint a token with: sluice token --data-dir %s --tenant acme --subject you@acme.test\n", dataDir)
}

// serve starts the three services, calls ready with their endpoints once all
// listen, and serves until ctx ends.
func serve(ctx context.Context, cfg serveConfig, ready func([]launch.Endpoint)) (err error) {
	env, err := launch.Setup(ctx, cfg.Common, "sluice")
	if err != nil {
		return err
	}
	defer func() {
		if cerr := env.Close(); err == nil {
			err = cerr
		}
	}()
	eps, closeAll, err := buildServices(ctx, env, cfg)
	if err != nil {
		return err
	}
	defer closeAll()
	if ready != nil {
		ready(eps)
	}
	return launch.Serve(ctx, eps)
}

// buildServices listens on the three addresses first, so that each service
// can dial the others' real addresses (port 0 included), then builds them.
func buildServices(ctx context.Context, env *launch.Env, cfg serveConfig) (eps []launch.Endpoint, closeAll func(), err error) {
	var closers []io.Closer
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	listen := func(name, addr string) (launch.Endpoint, error) {
		lis, err := launch.Listen(addr)
		if err != nil {
			return launch.Endpoint{}, fmt.Errorf("%s: %w", name, err)
		}
		closers = append(closers, lis)
		srv, err := env.NewServer(name)
		if err != nil {
			return launch.Endpoint{}, err
		}
		return launch.Endpoint{Name: name, Server: srv, Listener: lis}, nil
	}
	credEP, err := listen("credential", cfg.CredentialAddr)
	if err != nil {
		return nil, nil, err
	}
	destEP, err := listen("destination", cfg.DestinationAddr)
	if err != nil {
		return nil, nil, err
	}
	delivEP, err := listen("delivery", cfg.DeliveryAddr)
	if err != nil {
		return nil, nil, err
	}

	credConn, err := env.Dial(credEP.Listener.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, credConn)
	destConn, err := env.Dial(destEP.Listener.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, destConn)

	credCfg := cfg.Credential
	credCfg.DatabaseDSN = orSQLite(cfg.CredentialDB, cfg.DataDir, "credential")
	if credCfg.MasterKeyFile == "" {
		credCfg.MasterKeyFile = filepath.Join(cfg.DataDir, "keys", "master.key")
	}
	credSvc, err := credential.New(ctx, credCfg, credential.Peers{
		Destinations: destinationv1.NewDestinationServiceClient(destConn),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("credential: %w", err)
	}
	credSvc.Register(credEP.Server)

	destSvc, err := destination.New(ctx, destination.Config{DatabaseDSN: orSQLite(cfg.DestinationDB, cfg.DataDir, "destination"), AWS: cfg.Credential.AWS}, destination.Peers{
		Credentials: credentialv1.NewCredentialServiceClient(credConn),
		Access:      credentialv1.NewCredentialAccessServiceClient(credConn),
	})
	if err != nil {
		credSvc.Close()
		return nil, nil, fmt.Errorf("destination: %w", err)
	}
	destSvc.Register(destEP.Server)

	delivSvc, err := delivery.New(ctx, delivery.Config{DatabaseDSN: orSQLite(cfg.DeliveryDB, cfg.DataDir, "delivery")}, delivery.Peers{
		Destinations: destinationv1.NewDestinationServiceClient(destConn),
		Access:       credentialv1.NewCredentialAccessServiceClient(credConn),
	})
	if err != nil {
		credSvc.Close()
		destSvc.Close()
		return nil, nil, fmt.Errorf("delivery: %w", err)
	}
	delivSvc.Register(delivEP.Server)
	return []launch.Endpoint{credEP, destEP, delivEP}, closeAll, nil
}
