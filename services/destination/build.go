package destination

import (
	"context"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
)

// Build is the one way the destination service starts, for its own binary
// and for `sluice serve`: the default SQLite database under the data
// directory, a connection to the credential service at credentialAddr, and
// the service registered on srv. What it opens closes when srv shuts down.
func Build(ctx context.Context, env *launch.Env, srv *grpcserver.Server, cfg Config, credentialAddr string) error {
	cfg.DatabaseDSN = launch.OrSQLite(cfg.DatabaseDSN, env.DataDir, "destination")
	cc, err := env.Dial(credentialAddr, "credential")
	if err != nil {
		return err
	}
	srv.OnShutdown(cc)
	svc, err := New(ctx, cfg, Peers{
		Credentials: credentialv1.NewCredentialServiceClient(cc),
		Access:      credentialv1.NewCredentialAccessServiceClient(cc),
	})
	if err != nil {
		return err
	}
	svc.Register(srv)
	return nil
}
