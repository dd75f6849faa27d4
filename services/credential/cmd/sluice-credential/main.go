// Command sluice-credential runs the credential service on its own.
package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/services/credential"
)

func main() {
	var cfg credential.Config
	os.Exit(launch.RunService(launch.Service{
		Name: "credential",
		Addr: "127.0.0.1:7401",
		Flags: func(fs *pflag.FlagSet) {
			fs.StringVar(&cfg.DatabaseDSN, "database", "", "PostgreSQL URL or sqlite:PATH (default sqlite:{data-dir}/credential.db)")
			cfg.AddFlags(fs)
		},
		Build: func(ctx context.Context, _ *launch.Env, common launch.Common, srv *grpcserver.Server) error {
			if cfg.DatabaseDSN == "" {
				cfg.DatabaseDSN = launch.SQLiteDSN(common.DataDir, "credential")
			}
			if cfg.MasterKeyFile == "" {
				cfg.MasterKeyFile = filepath.Join(common.DataDir, "keys", "master.key")
			}
			svc, err := credential.New(ctx, cfg)
			if err != nil {
				return err
			}
			svc.Register(srv)
			return nil
		},
	}, os.Args[1:]))
}
