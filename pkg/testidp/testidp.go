// Package testidp is an OpenID provider for tests and local trials: static
// users with a password, a tenant and policies, static clients, and
// signing keys that rotate on request. It is built on zitadel's certified
// OpenID provider library (github.com/zitadel/oidc/v3/pkg/op), which runs
// the protocol (discovery, the authorization code flow with PKCE, the
// token endpoint, JWKS); this package only keeps its state, in memory, and
// serves the login form. Access tokens are JWTs signed by the current key,
// carrying the user's tenant and policies as claims, as an operator's
// identity provider would be configured to do.
package testidp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// User is a person who can log in.
type User struct {
	Name, Password string
	Tenant         string
	Policies       []string
}

// Client is an application that users log in to.
type Client struct {
	ID, Secret   string
	RedirectURIs []string
}

// Config is what the provider serves.
type Config struct {
	// Issuer is the provider's URL, as tokens name it.
	Issuer string
	Users  []User
	Client []Client
	// Audience is added to every access token's audience, beside the
	// client's id: what the services are configured to accept.
	Audience string
	// Algorithm signs tokens: RS256, ES256 or EdDSA.
	Algorithm string
	// TokenLifetime is how long access tokens last.
	TokenLifetime time.Duration
	// TenantClaim and PoliciesClaim name the claims that carry a user's
	// tenant and policies.
	TenantClaim, PoliciesClaim string
}

// Provider is a running provider's state and handler.
type Provider struct {
	cfg     Config
	op      *op.Provider
	handler http.Handler

	mu       sync.Mutex
	keys     []*signingKey // the current one last
	requests map[string]*authRequest
	codes    map[string]string // code → request id
	tokens   map[string]*token
}

// New answers a provider for cfg, with a first signing key.
func New(cfg Config) (*Provider, error) {
	if cfg.Algorithm == "" {
		cfg.Algorithm = "RS256"
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = "tenant"
	}
	if cfg.PoliciesClaim == "" {
		cfg.PoliciesClaim = "policies"
	}
	p := &Provider{cfg: cfg, requests: map[string]*authRequest{}, codes: map[string]string{}, tokens: map[string]*token{}}
	if _, err := p.Rotate(cfg.Algorithm); err != nil {
		return nil, err
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	provider, err := op.NewProvider(&op.Config{CryptoKey: key, CodeMethodS256: true, AuthMethodPost: true},
		&storage{p: p}, op.StaticIssuer(cfg.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("testidp: %w", err)
	}
	p.op = provider
	mux := http.NewServeMux()
	mux.HandleFunc("/login", p.login)
	mux.HandleFunc("POST /admin/rotate", func(w http.ResponseWriter, r *http.Request) {
		kid, err := p.Rotate(r.URL.Query().Get("alg"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, kid)
	})
	mux.Handle("/", provider)
	p.handler = mux
	return p, nil
}

// ServeHTTP serves the provider.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

// Rotate makes a new signing key of alg (the configured one when empty)
// current; the previous keys stay in the JWKS, so tokens they signed still
// verify. It answers the new key's id.
func (p *Provider) Rotate(alg string) (string, error) {
	if alg == "" {
		alg = p.cfg.Algorithm
	}
	var (
		priv crypto.Signer
		err  error
	)
	switch jose.SignatureAlgorithm(alg) {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return "", fmt.Errorf("testidp: algorithm %q: RS256, ES256 or EdDSA", alg)
	}
	if err != nil {
		return "", err
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	k := &signingKey{id: hex.EncodeToString(id), alg: jose.SignatureAlgorithm(alg), priv: priv}
	p.mu.Lock()
	p.keys = append(p.keys, k)
	p.mu.Unlock()
	return k.id, nil
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: test identity provider</title></head>
<body><main><h1>Sign in</h1><p>Test identity provider: not for production.</p>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<label for="username">User</label> <input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form></main></body></html>`))

// login shows the form for an authorization request, and on a right
// user and password marks the request done and sends the browser back to
// the provider, which answers the client with a code.
func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	// No form-action: the login's redirects end at the client's origin.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	id := r.FormValue("id")
	p.mu.Lock()
	req := p.requests[id]
	p.mu.Unlock()
	if req == nil {
		http.Error(w, "unknown authorization request", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodPost {
		_ = loginPage.Execute(w, map[string]string{"ID": id})
		return
	}
	u := p.user(r.FormValue("username"))
	if u == nil || subtle.ConstantTimeCompare([]byte(u.Password), []byte(r.FormValue("password"))) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		_ = loginPage.Execute(w, map[string]string{"ID": id, "Error": "Wrong user or password."})
		return
	}
	p.mu.Lock()
	req.subject, req.done, req.authTime = u.Name, true, time.Now()
	p.mu.Unlock()
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(op.ContextWithIssuer(r.Context(), p.cfg.Issuer), id), http.StatusFound)
}

func (p *Provider) user(name string) *User {
	for i := range p.cfg.Users {
		if p.cfg.Users[i].Name == name {
			return &p.cfg.Users[i]
		}
	}
	return nil
}

func (p *Provider) client(id string) *Client {
	for i := range p.cfg.Client {
		if p.cfg.Client[i].ID == id {
			return &p.cfg.Client[i]
		}
	}
	return nil
}

// signingKey is one of the provider's keys.
type signingKey struct {
	id   string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Key() any                                    { return k.priv }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ k *signingKey }

func (k publicKey) ID() string                         { return k.k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return k.k.alg }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.k.priv.Public() }

// authRequest is one authorization request, from /authorize to its code.
type authRequest struct {
	id, clientID, redirectURI, state, nonce string
	scopes                                  []string
	responseType                            oidc.ResponseType
	responseMode                            oidc.ResponseMode
	challenge                               *oidc.CodeChallenge
	audience                                []string
	subject                                 string
	authTime                                time.Time
	done                                    bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// token is an access token issued.
type token struct {
	id, subject, clientID string
	expires               time.Time
}

// opClient is a Client as the library sees it.
type opClient struct {
	c        *Client
	loginURL string
}

func (c opClient) GetID() string                       { return c.c.ID }
func (c opClient) RedirectURIs() []string              { return c.c.RedirectURIs }
func (c opClient) PostLogoutRedirectURIs() []string    { return c.c.RedirectURIs }
func (c opClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c opClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c opClient) GrantTypes() []oidc.GrantType         { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c opClient) LoginURL(id string) string            { return c.loginURL + "?id=" + id }
func (c opClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (c opClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (c opClient) DevMode() bool                        { return true } // http redirect URIs on loopback
func (c opClient) IsScopeAllowed(string) bool           { return false }
func (c opClient) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c opClient) ClockSkew() time.Duration             { return 0 }
func (c opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// storage keeps the provider's state for the library.
type storage struct{ p *Provider }

var _ op.Storage = (*storage)(nil)

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	a := &authRequest{id: randomID(), clientID: r.ClientID, redirectURI: r.RedirectURI, state: r.State, nonce: r.Nonce,
		scopes: r.Scopes, responseType: r.ResponseType, responseMode: r.ResponseMode, audience: []string{r.ClientID}}
	if s.p.cfg.Audience != "" && s.p.cfg.Audience != r.ClientID {
		a.audience = append(a.audience, s.p.cfg.Audience)
	}
	if r.CodeChallenge != "" {
		a.challenge = &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod}
	}
	s.p.mu.Lock()
	s.p.requests[a.id] = a
	s.p.mu.Unlock()
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if a, ok := s.p.requests[id]; ok {
		return a, nil
	}
	return nil, errors.New("unknown authorization request")
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.p.mu.Lock()
	id, ok := s.p.codes[code]
	s.p.mu.Unlock()
	if !ok {
		return nil, errors.New("unknown code")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	delete(s.p.requests, id)
	for code, rid := range s.p.codes {
		if rid == id {
			delete(s.p.codes, code)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	clientID := ""
	if a, ok := r.(*authRequest); ok {
		clientID = a.clientID
	}
	t := &token{id: randomID(), subject: r.GetSubject(), clientID: clientID, expires: time.Now().Add(s.p.cfg.TokenLifetime)}
	s.p.mu.Lock()
	s.p.tokens[t.id] = t
	s.p.mu.Unlock()
	return t.id, t.expires, nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not offered")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(_ context.Context, id, _, _ string) *oidc.Error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	delete(s.p.tokens, id)
	return nil
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.p.keys[len(s.p.keys)-1], nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	var algs []jose.SignatureAlgorithm
	for _, k := range s.p.keys {
		if !slices.Contains(algs, k.alg) {
			algs = append(algs, k.alg)
		}
	}
	return algs, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	out := make([]op.Key, len(s.p.keys))
	for i, k := range s.p.keys {
		out[i] = publicKey{k}
	}
	return out, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c := s.p.client(id)
	if c == nil {
		return nil, errors.New("unknown client")
	}
	return opClient{c: c, loginURL: s.p.cfg.Issuer + "/login"}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c := s.p.client(id)
	if c == nil || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return errors.New("wrong client id or secret")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, r op.IDTokenRequest, _ []string) error {
	info.Subject = r.GetSubject()
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, _, subject, _ string) error {
	info.Subject = subject
	return nil
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, r *oidc.IntrospectionResponse, _, subject, clientID string) error {
	r.Active, r.Subject, r.ClientID = true, subject, clientID
	return nil
}

// GetPrivateClaimsFromScopes puts the user's tenant and policies in every
// token, under the configured claim names.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, userID, _ string, _ []string) (map[string]any, error) {
	u := s.p.user(userID)
	if u == nil {
		return nil, nil
	}
	return map[string]any{s.p.cfg.TenantClaim: u.Tenant, s.p.cfg.PoliciesClaim: u.Policies}, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile grants are not offered")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile grants are not offered")
}

func (s *storage) Health(context.Context) error { return nil }
