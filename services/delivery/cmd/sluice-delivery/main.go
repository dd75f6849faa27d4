// Command sluice-delivery runs the delivery service on its own.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/services/delivery"
)

func main() {
	var (
		cfg                             = delivery.DefaultConfig()
		credentialAddr, destinationAddr string
	)
	os.Exit(launch.RunService(launch.Service{
		Name: "delivery",
		Addr: "127.0.0.1:7403",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&cfg.DatabaseDSN, "database", "", "PostgreSQL URL or sqlite:PATH (default sqlite:{data-dir}/delivery.db)")
			fs.StringVar(&credentialAddr, "credential-addr", "127.0.0.1:7401", "address of the credential service")
			fs.StringVar(&destinationAddr, "destination-addr", "127.0.0.1:7402", "address of the destination service")
			cfg.AWS.AddFlags(fs)
			cfg.AddFlags(fs)
		},
		Server: delivery.ServerConfig,
		Build: func(ctx context.Context, env *launch.Env, srv *grpcserver.Server) error {
			return delivery.Build(ctx, env, srv, cfg, destinationAddr, credentialAddr)
		},
	}, os.Args[1:]))
}
