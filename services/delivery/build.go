package delivery

import (
	"context"
	"log/slog"
	"path/filepath"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
)

// Build is the one way the delivery service starts, for its own binary and
// for `sluice serve`: the default SQLite database under the data directory,
// connections to the destination and credential services, and the service
// registered on srv. What it opens closes when srv shuts down.
func Build(ctx context.Context, env *launch.Env, srv *grpcserver.Server, cfg Config, destinationAddr, credentialAddr string) error {
	cfg.DatabaseDSN = launch.OrSQLite(cfg.DatabaseDSN, env.DataDir, "delivery")
	if cfg.StagingDir == "" {
		cfg.StagingDir = filepath.Join(env.DataDir, "staging")
	}
	if cfg.Events.MasterKeyFile == "" && cfg.Events.KMSKeyID == "" && cfg.Events.Sealer == nil {
		cfg.Events.MasterKeyFile = filepath.Join(env.DataDir, "keys", "events.key")
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = filepath.Join(env.DataDir, "spool")
	}
	destConn, err := env.Dial(destinationAddr, "destination")
	if err != nil {
		return err
	}
	srv.OnShutdown(destConn)
	credConn, err := env.Dial(credentialAddr, "credential")
	if err != nil {
		return err
	}
	srv.OnShutdown(credConn)
	svc, err := New(ctx, cfg, Peers{
		Destinations: destinationv1.NewDestinationServiceClient(destConn),
		Access:       credentialv1.NewCredentialAccessServiceClient(credConn),
		Credentials:  credentialv1.NewCredentialServiceClient(credConn),
	})
	if err != nil {
		return err
	}
	svc.Register(srv)
	svc.Start(env.Logger.With(slog.String("component", "delivery")))
	return nil
}
