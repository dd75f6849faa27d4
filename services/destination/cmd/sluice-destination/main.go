// Command sluice-destination runs the destination service on its own.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

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
		Build: func(ctx context.Context, env *launch.Env, srv *grpcserver.Server) error {
			return destination.Build(ctx, env, srv, cfg, credentialAddr)
		},
	}, os.Args[1:]))
}
