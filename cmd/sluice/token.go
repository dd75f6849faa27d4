package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/launch"
)

func tokenCommand() *cobra.Command {
	var (
		dataDir, signingKey, tenant, subject string
		policies                             []string
		ttl                                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a development user token from the local user key",
		Long: `Mints a user's bearer token (EdDSA JWT) signed with the development user key
that 'sluice serve' trusts when no --jwt-public-key is configured
({data-dir}/keys/dev-user.pem, created on first use). Services sign their own
tokens with another key; no user token can act as a service.
Policies: "Datagrid Administrator", "Datagrid Operator", "Restrict PII access".
Use it as: grpcurl -H "authorization: Bearer $(sluice token ...)" ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if signingKey == "" {
				signingKey = launch.DevUserKeyPath(dataDir)
			}
			key, err := auth.LoadOrCreateSigningKey(signingKey)
			if err != nil {
				return err
			}
			for _, p := range policies {
				if p == auth.PolicyService {
					return fmt.Errorf("the %q policy belongs to Sluice's own services; it is not minted for people", p)
				}
			}
			tok, err := auth.NewSigner(key).Mint(subject, tenant, policies, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data-dir", launch.DefaultCommon().DataDir, "directory holding the development user key")
	fs.StringVar(&signingKey, "key", "", "Ed25519 private key (PEM) to sign with (default {data-dir}/keys/dev-user.pem)")
	fs.StringVar(&tenant, "tenant", "", "tenant the caller belongs to (required)")
	fs.StringVar(&subject, "subject", "", "who the caller is, e.g. an email (required)")
	fs.StringSliceVar(&policies, "policy", nil, "a policy the caller holds; repeatable")
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid (services refuse more than --max-token-lifetime, 24h by default)")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.MarkFlagRequired("subject")
	return cmd
}
