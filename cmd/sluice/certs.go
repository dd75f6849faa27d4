package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/mtls"
)

// certsCommand makes a development CA and certificates for mutual TLS.
func certsCommand() *cobra.Command {
	var (
		dir   string
		names []string
		valid time.Duration
	)
	cmd := &cobra.Command{
		Use:   "certs --dir DIR",
		Short: "Make a development CA and certificates for mutual TLS between the services",
		Long: `Writes ca.pem (and ca-key.pem) and, for each name, NAME.pem and NAME-key.pem
into --dir. A service's certificate names it (sluice-credential, ...), and its
callers check that name; "serve" names all three for sluice serve; any other
name (cli) is a client's. Then, for example:
  sluice serve --tls-cert DIR/serve.pem --tls-key DIR/serve-key.pem --tls-ca DIR/ca.pem
  sluice delivery list --tls-cert DIR/cli.pem --tls-key DIR/cli-key.pem --tls-ca DIR/ca.pem
For development only: production certificates come from your own CA.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := mtls.MakeDevelopment(dir, names, valid); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote ca.pem and the certificates of %v into %s\n", names, dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", ".data/tls", "where to write them")
	cmd.Flags().StringSliceVar(&names, "name", []string{"serve", "credential", "destination", "delivery", "cli"}, "certificates to make")
	cmd.Flags().DurationVar(&valid, "valid", 90*24*time.Hour, "how long they last")
	return cmd
}
