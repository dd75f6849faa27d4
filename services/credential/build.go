package credential

import (
	"context"
	"path/filepath"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
)

// Build is the one way the credential service starts, for its own binary
// and for `sluice serve`: defaults under the data directory (SQLite
// database, local master key), a connection to the destination service at
// destinationAddr, and the service registered on srv. What it opens closes
// when srv shuts down, after srv stopped serving.
func Build(ctx context.Context, env *launch.Env, srv *grpcserver.Server, cfg Config, destinationAddr string) error {
	cfg.DatabaseDSN = launch.OrSQLite(cfg.DatabaseDSN, env.DataDir, "credential")
	if cfg.Logger == nil {
		cfg.Logger = env.Logger
	}
	if cfg.MasterKeyFile == "" && cfg.KMSKeyID == "" && cfg.Sealer == nil {
		cfg.MasterKeyFile = filepath.Join(env.DataDir, "keys", "master.key")
	}
	cc, err := env.Dial(destinationAddr, "destination")
	if err != nil {
		return err
	}
	srv.OnShutdown(cc)
	svc, err := New(ctx, cfg, Peers{Destinations: destinationv1.NewDestinationServiceClient(cc)})
	if err != nil {
		return err
	}
	svc.Register(srv)
	return nil
}
