// Command sluice-credential runs the credential service on its own.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

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
		Build: func(ctx context.Context, env *launch.Env, srv *grpcserver.Server) error {
			return credential.Build(ctx, env, srv, cfg, destinationAddr)
		},
	}, os.Args[1:]))
}
