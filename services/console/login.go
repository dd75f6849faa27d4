package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sluicehq/sluice/pkg/auth"
)

// pendingLogin is an OIDC login between the redirect to the provider and
// its callback.
type pendingLogin struct {
	verifier string
	started  time.Time
}

// loginPage offers the ways in: the identity provider, and on loopback the
// development login, clearly marked.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "login", map[string]any{
		"OIDC": s.cfg.OIDC.Issuer != "", "Dev": s.cfg.DevSigner != nil && loopback(r),
		"Policies": []string{auth.PolicyAdministrator, auth.PolicyOperator, auth.PolicyRestrictPII},
		"Error":    r.URL.Query().Get("error"),
	}, nil)
}

// devLogin signs a token with the development user key for whom the form
// names: only on loopback, only when the console was given the key.
func (s *Server) devLogin(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DevSigner == nil || !loopback(r) {
		http.Error(w, "the development login is off here", http.StatusForbidden)
		return
	}
	subject, tenant := strings.TrimSpace(r.PostFormValue("subject")), strings.TrimSpace(r.PostFormValue("tenant"))
	var policies []string
	for _, p := range r.PostForm["policy"] {
		if slices.Contains([]string{auth.PolicyAdministrator, auth.PolicyOperator, auth.PolicyRestrictPII}, p) {
			policies = append(policies, p)
		}
	}
	if subject == "" || tenant == "" {
		http.Redirect(w, r, "/login?error=Give+a+user+and+a+tenant.", http.StatusSeeOther)
		return
	}
	const ttl = 8 * time.Hour
	tok, err := s.cfg.DevSigner.Mint(subject, tenant, policies, ttl)
	if err == nil {
		err = s.start(w, r, tok)
	}
	if err != nil {
		http.Redirect(w, r, "/login?error="+urlQuery(err.Error()), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/deliveries", http.StatusSeeOther)
}

// start verifies a token as the services will and opens its session.
func (s *Server) start(w http.ResponseWriter, r *http.Request, token string) error {
	c, err := s.cfg.Verifier.VerifyUserContext(r.Context(), token)
	if err != nil {
		return err
	}
	exp := time.Now().Add(time.Hour)
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	s.newSession(w, r, token, &auth.Caller{Subject: c.Subject, Tenant: c.Tenant, Policies: c.Policies}, exp)
	s.log.Info("logged in", "subject", c.Subject, "tenant", c.Tenant)
	return nil
}

func (s *Server) oauth(ctx context.Context) (*oauth2.Config, error) {
	p, err := oidc.NewProvider(ctx, s.cfg.OIDC.Issuer)
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{ClientID: s.cfg.OIDC.ClientID, ClientSecret: s.cfg.OIDC.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: s.cfg.OIDC.RedirectURL, Scopes: []string{oidc.ScopeOpenID}}, nil
}

// oidcStart sends the browser to the identity provider, with PKCE and a
// state kept here until the callback (at most ten minutes).
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	if s.cfg.OIDC.Issuer == "" {
		http.Error(w, errNoLogin.Error(), http.StatusNotFound)
		return
	}
	cfg, err := s.oauth(r.Context())
	if err != nil {
		http.Redirect(w, r, "/login?error=The+identity+provider+cannot+be+reached.", http.StatusSeeOther)
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	state, verifier := hex.EncodeToString(b), oauth2.GenerateVerifier()
	s.mu.Lock()
	for k, p := range s.pending {
		if time.Since(p.started) > 10*time.Minute {
			delete(s.pending, k)
		}
	}
	s.pending[state] = &pendingLogin{verifier: verifier, started: time.Now()}
	s.mu.Unlock()
	http.Redirect(w, r, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// oidcCallback takes the provider's code for its access token, verifies
// the token as the services will, and opens the session. The token stays
// on the server.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	s.mu.Lock()
	p := s.pending[state]
	delete(s.pending, state)
	s.mu.Unlock()
	if p == nil || time.Since(p.started) > 10*time.Minute {
		http.Redirect(w, r, "/login?error=The+login+expired+or+was+not+started+here:+try+again.", http.StatusSeeOther)
		return
	}
	if e := r.URL.Query().Get("error"); e != "" {
		http.Redirect(w, r, "/login?error="+urlQuery("The identity provider refused: "+e), http.StatusSeeOther)
		return
	}
	cfg, err := s.oauth(r.Context())
	if err != nil {
		http.Redirect(w, r, "/login?error=The+identity+provider+cannot+be+reached.", http.StatusSeeOther)
		return
	}
	tok, err := cfg.Exchange(r.Context(), r.URL.Query().Get("code"), oauth2.VerifierOption(p.verifier))
	if err == nil {
		err = s.start(w, r, tok.AccessToken)
	}
	if err != nil {
		s.log.Warn("login failed", "error", err.Error())
		http.Redirect(w, r, "/login?error=The+login+failed:+"+urlQuery(err.Error()), http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/deliveries", http.StatusSeeOther)
}
