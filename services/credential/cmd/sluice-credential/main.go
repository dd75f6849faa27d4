// Command sluice-credential runs the credential service on its own.
package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"

	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/services/credential"
)

func main() {
	var (
		cfg             credential.Config
		destinationAddr string
	)
	os.Exit(launch.RunService(launch.Service{
		Name: "credential",
		Addr: "127.0.0.1:7401",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&cfg.DatabaseDSN, "database", "", "PostgreSQL URL or sqlite:PATH (default sqlite:{data-dir}/credential.db)")
			fs.StringVar(&destinationAddr, "destination-addr", "127.0.0.1:7402", "address of the destination service")
			cfg.AddFlags(fs)
		},
		Build: func(ctx context.Context, env *launch.Env, common launch.Common, srv *grpcserver.Server) error {
			if cfg.DatabaseDSN == "" {
				cfg.DatabaseDSN = launch.SQLiteDSN(common.DataDir, "credential")
			}
			if cfg.MasterKeyFile == "" {
				cfg.MasterKeyFile = filepath.Join(common.DataDir, "keys", "master.key")
			}
			cc, err := env.Dial(destinationAddr)
			if err != nil {
				return err
			}
			srv.OnShutdown(cc)
			svc, err := credential.New(ctx, cfg, credential.Peers{Destinations: destinationv1.NewDestinationServiceClient(cc)})
			if err != nil {
				return err
			}
			svc.Register(srv)
			return nil
		},
	}, os.Args[1:]))
}
