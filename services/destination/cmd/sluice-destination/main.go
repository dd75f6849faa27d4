// Command sluice-destination runs the destination service on its own.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/services/destination"
)

func main() {
	var (
		cfg            destination.Config
		credentialAddr string
	)
	os.Exit(launch.RunService(launch.Service{
		Name: "destination",
		Addr: "127.0.0.1:7402",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&cfg.DatabaseDSN, "database", "", "PostgreSQL URL or sqlite:PATH (default sqlite:{data-dir}/destination.db)")
			fs.StringVar(&credentialAddr, "credential-addr", "127.0.0.1:7401", "address of the credential service")
			cfg.AWS.AddFlags(fs)
		},
		Build: func(ctx context.Context, env *launch.Env, common launch.Common, srv *grpcserver.Server) error {
			if cfg.DatabaseDSN == "" {
				cfg.DatabaseDSN = launch.SQLiteDSN(common.DataDir, "destination")
			}
			cc, err := env.Dial(credentialAddr)
			if err != nil {
				return err
			}
			srv.OnShutdown(cc)
			svc, err := destination.New(ctx, cfg, destination.Peers{
				Credentials: credentialv1.NewCredentialServiceClient(cc),
				Access:      credentialv1.NewCredentialAccessServiceClient(cc),
			})
			if err != nil {
				return err
			}
			svc.Register(srv)
			return nil
		},
	}, os.Args[1:]))
}
