// Command sluice-delivery runs the delivery service on its own.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/services/delivery"
)

func main() {
	var (
		cfg                             delivery.Config
		credentialAddr, destinationAddr string
	)
	os.Exit(launch.RunService(launch.Service{
		Name: "delivery",
		Addr: "127.0.0.1:7403",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&cfg.DatabaseDSN, "database", "", "PostgreSQL URL or sqlite:PATH (default sqlite:{data-dir}/delivery.db)")
			fs.StringVar(&credentialAddr, "credential-addr", "127.0.0.1:7401", "address of the credential service")
			fs.StringVar(&destinationAddr, "destination-addr", "127.0.0.1:7402", "address of the destination service")
		},
		Build: func(ctx context.Context, env *launch.Env, common launch.Common, srv *grpcserver.Server) error {
			if cfg.DatabaseDSN == "" {
				cfg.DatabaseDSN = launch.SQLiteDSN(common.DataDir, "delivery")
			}
			credConn, err := env.Dial(credentialAddr)
			if err != nil {
				return err
			}
			srv.OnShutdown(credConn)
			destConn, err := env.Dial(destinationAddr)
			if err != nil {
				return err
			}
			srv.OnShutdown(destConn)
			svc, err := delivery.New(ctx, cfg, delivery.Peers{
				Destinations: destinationv1.NewDestinationServiceClient(destConn),
				Access:       credentialv1.NewCredentialAccessServiceClient(credConn),
			})
			if err != nil {
				return err
			}
			svc.Register(srv)
			return nil
		},
	}, os.Args[1:]))
}
