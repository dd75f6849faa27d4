// Command sluice-testidp is an OpenID provider for tests and local trials
// of logging in with an identity provider (pkg/testidp): static users and
// one static client, its signing key rotated by POST /admin/rotate. It
// listens on loopback only. Not for production.
//
//	sluice-testidp --listen 127.0.0.1:7480 \
//	  --user 'ada@acme.test:secret:acme:Datagrid Administrator' \
//	  --client-id console --client-secret s3cret --redirect-uri http://127.0.0.1:7404/auth/callback
package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/pkg/testidp"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-testidp:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := pflag.NewFlagSet("sluice-testidp", pflag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:7480", "loopback address to listen on")
	issuer := fs.String("issuer", "", "the issuer URL its tokens name (default http://{listen})")
	users := fs.StringArray("user", nil, "a user, `name:password:tenant:policy,policy`; repeatable")
	clientID := fs.String("client-id", "console", "the client's id")
	clientSecret := fs.String("client-secret", "", "the client's secret")
	redirects := fs.StringArray("redirect-uri", nil, "a redirect URI of the client; repeatable")
	audience := fs.String("audience", "sluice", "added to every access token's audience")
	alg := fs.String("alg", "RS256", "signing algorithm: RS256, ES256 or EdDSA")
	lifetime := fs.Duration("token-lifetime", time.Hour, "how long access tokens last")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return errors.New("--listen must be a loopback address: this provider is for tests")
	}
	cfg := testidp.Config{Audience: *audience, Algorithm: *alg, TokenLifetime: *lifetime,
		Client: []testidp.Client{{ID: *clientID, Secret: *clientSecret, RedirectURIs: *redirects}}}
	for _, u := range *users {
		parts := strings.SplitN(u, ":", 4)
		if len(parts) < 3 {
			return fmt.Errorf("--user %q: want name:password:tenant:policy,policy", u)
		}
		user := testidp.User{Name: parts[0], Password: parts[1], Tenant: parts[2]}
		if len(parts) == 4 && parts[3] != "" {
			user.Policies = strings.Split(parts[3], ",")
		}
		cfg.Users = append(cfg.Users, user)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	cfg.Issuer = *issuer
	if cfg.Issuer == "" {
		cfg.Issuer = "http://" + ln.Addr().String()
	}
	p, err := testidp.New(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("serving %s\n", cfg.Issuer)
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	log.SetFlags(0)
	return srv.Serve(ln)
}
