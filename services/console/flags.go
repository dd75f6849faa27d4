package console

import (
	"github.com/spf13/pflag"
)

// AddFlags registers the console's login flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.OIDC.Issuer, "oidc-issuer", c.OIDC.Issuer, "the identity provider users log in with (OpenID Connect, authorization code with PKCE); give the services the same --jwt-issuer")
	fs.StringVar(&c.OIDC.ClientID, "oidc-client-id", c.OIDC.ClientID, "the console's client id at the identity provider")
	fs.StringVar(&c.OIDC.ClientSecret, "oidc-client-secret", c.OIDC.ClientSecret, "the console's client secret at the identity provider (or SLUICE_OIDC_CLIENT_SECRET)")
	fs.StringVar(&c.OIDC.RedirectURL, "oidc-redirect-url", c.OIDC.RedirectURL, "the console's /auth/callback URL as the identity provider knows it")
	fs.StringVar(&c.Environment, "environment", "production", "the tenant environment shown first")
}
