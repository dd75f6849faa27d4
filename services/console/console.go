// Package console is the web console: the pages the product brief's users
// click through, rendered on the server with html/template (contextual
// escaping) and updated in place with htmx. It holds no authority of its
// own: every read and every action is a gRPC call to the three services
// as the logged-in user, with the user's own token, so the services'
// access rules are the only rules; the console only hides what a user may
// not do.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
)

//go:embed templates static
var assets embed.FS

// Config configures the console.
type Config struct {
	// OIDC, when its Issuer is set, logs users in through the operator's
	// identity provider (authorization code with PKCE).
	OIDC OIDCConfig
	// DevSigner, when set, offers the development login: a token signed
	// with the development user key, for loopback callers only.
	DevSigner *auth.Signer
	// Verifier checks the tokens a login yields, as the services will.
	Verifier *auth.Verifier
	// Environment is the tenant environment shown first.
	Environment string
}

// OIDCConfig is the identity provider a production console logs in with.
type OIDCConfig struct {
	Issuer, ClientID, ClientSecret string
	// RedirectURL is the console's /auth/callback as the provider knows it.
	RedirectURL string
}

// Peers are the services the console calls as the user.
type Peers struct {
	Credentials  credentialv1.CredentialServiceClient
	Destinations destinationv1.DestinationServiceClient
	Deliveries   deliveryv1.DeliveryServiceClient
	Workflows    deliveryv1.WorkflowServiceClient
}

// Server serves the console.
type Server struct {
	cfg     Config
	peers   Peers
	log     *slog.Logger
	pages   map[string]*template.Template
	handler http.Handler

	mu       sync.Mutex
	sessions map[string]*session
	pending  map[string]*pendingLogin // OIDC logins under way, by state
}

// session is a logged-in user: their token, which never leaves the
// server, and what it says.
type session struct {
	token   string
	caller  *auth.Caller
	expires time.Time
}

// New answers the console.
func New(cfg Config, peers Peers, log *slog.Logger) (*Server, error) {
	if cfg.Environment == "" {
		cfg.Environment = "production"
	}
	s := &Server{cfg: cfg, peers: peers, log: log, sessions: map[string]*session{}, pending: map[string]*pendingLogin{}}
	if err := s.parse(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/deliveries", http.StatusSeeOther) })
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login/dev", s.devLogin)
	mux.HandleFunc("GET /auth/start", s.oidcStart)
	mux.HandleFunc("GET /auth/callback", s.oidcCallback)
	mux.HandleFunc("POST /logout", s.logout)
	mux.Handle("GET /deliveries", s.user(s.deliveries))
	mux.Handle("GET /deliveries/{id}", s.user(s.delivery))
	mux.Handle("GET /notifications", s.user(s.notifications))
	mux.Handle("POST /notifications/{id}/acknowledge", s.user(s.acknowledge))
	mux.Handle("GET /workflows", s.user(s.workflows))
	mux.Handle("GET /workflows/{id}", s.user(s.workflow))
	mux.Handle("POST /workflows/{id}/resolve", s.user(s.resolve))
	mux.Handle("GET /credentials", s.user(s.credentials))
	mux.Handle("GET /credentials/new", s.user(s.newCredential))
	mux.Handle("POST /credentials", s.user(s.createCredential))
	mux.Handle("GET /credentials/{id}", s.user(s.credential))
	mux.Handle("POST /credentials/{id}/test", s.user(s.testCredential))
	mux.Handle("POST /credentials/{id}/secret", s.user(s.rotateSecret))
	mux.Handle("POST /credentials/{id}/edit", s.user(s.editCredential))
	mux.Handle("POST /credentials/{id}/external-id", s.user(s.regenerateExternalID))
	mux.Handle("POST /credentials/{id}/delete", s.user(s.deleteCredential))
	mux.Handle("GET /destinations", s.user(s.destinations))
	mux.Handle("GET /destinations/new", s.user(s.newDestination))
	mux.Handle("POST /destinations", s.user(s.createDestination))
	mux.Handle("POST /destinations/preview", s.user(s.previewDestination))
	mux.Handle("GET /destinations/{id}", s.user(s.destination))
	mux.Handle("POST /destinations/{id}/test", s.user(s.testDestination))
	mux.Handle("POST /destinations/{id}/edit", s.user(s.editDestination))
	mux.Handle("POST /destinations/{id}/promote", s.user(s.promoteDestination))
	// Cross-site requests that change state are refused (Sec-Fetch-Site,
	// then Origin against Host), whatever the session cookie says.
	s.handler = secure(http.NewCrossOriginProtection().Handler(mux))
	return s, nil
}

// ServeHTTP serves the console.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// secure sets the headers every answer carries: a strict content security
// policy (no inline script or style, nothing from elsewhere), no framing,
// no sniffing, no referrer beyond the console.
func secure(next http.Handler) http.Handler {
	const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

const sessionCookie = "sluice_session"

// newSession keeps a verified token and sets the session cookie: HttpOnly,
// SameSite=Lax, Secure unless served on loopback; it ends with the token.
func (s *Server) newSession(w http.ResponseWriter, r *http.Request, token string, c *auth.Caller, expires time.Time) {
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	sid := hex.EncodeToString(id)
	s.mu.Lock()
	for k, old := range s.sessions { // the expired go
		if time.Now().After(old.expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[sid] = &session{token: token, caller: c, expires: expires}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: !loopback(r), Expires: expires})
}

func (s *Server) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.sessions[c.Value]
	if se == nil || time.Now().After(se.expires) {
		delete(s.sessions, c.Value)
		return nil
	}
	return se
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: !loopback(r)})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// request is one page request of a logged-in user.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	se     *session
	parent string
}

// as answers the call option that makes a call as the user.
func (q *request) as() grpc.CallOption {
	return grpc.PerRPCCredentials(auth.BearerCredentials(q.se.token))
}

func (q *request) ctx() context.Context { return q.r.Context() }

// user serves a page to a logged-in user; others go to the login page.
func (s *Server) user(page func(*request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		se := s.sessionOf(r)
		if se == nil {
			if r.Header.Get("HX-Request") != "" {
				w.Header().Set("HX-Redirect", "/login")
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil {
				http.Error(w, "the form could not be read", http.StatusBadRequest)
				return
			}
		}
		env := r.URL.Query().Get("env")
		if env != "sandbox" {
			env = s.cfg.Environment
		}
		q := &request{w: w, r: r, se: se, parent: "tenants/" + se.caller.Tenant + "/environments/" + env}
		if err := page(q); err != nil {
			s.fail(q, err)
		}
	})
}

// loopback reports whether the request came from this machine.
func loopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// leaf answers the last segment of a resource name.
func leaf(name string) string { return name[strings.LastIndex(name, "/")+1:] }

var errNoLogin = errors.New("no login is configured: give the console an identity provider (--oidc-issuer) or run it on loopback with the development key")
