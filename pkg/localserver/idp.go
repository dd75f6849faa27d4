package localserver

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// IdPOptions configure a test OpenID provider (cmd/sluice-testidp).
type IdPOptions struct {
	// Users are `name:password:tenant:policy,policy`.
	Users []string
	// ClientID, ClientSecret and RedirectURIs are its one client's.
	ClientID, ClientSecret string
	RedirectURIs           []string
	// Audience is added to every access token's audience.
	Audience string
	// Algorithm signs its tokens: RS256 (default), ES256 or EdDSA.
	Algorithm string
}

// IdP is a running test OpenID provider.
type IdP struct {
	// URL is its issuer.
	URL string
	p   *process
	dir string
}

// StartIdP builds and starts an OpenID provider on a free loopback port,
// as its own process, and waits until it answers discovery.
func StartIdP(o IdPOptions) (*IdP, error) {
	bin, err := buildServices()
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-idp-")
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	args := []string{"--listen", addr, "--client-id", o.ClientID, "--client-secret", o.ClientSecret}
	for _, u := range o.Users {
		args = append(args, "--user", u)
	}
	for _, r := range o.RedirectURIs {
		args = append(args, "--redirect-uri", r)
	}
	if o.Audience != "" {
		args = append(args, "--audience", o.Audience)
	}
	if o.Algorithm != "" {
		args = append(args, "--alg", o.Algorithm)
	}
	p, err := startProcess("sluice-testidp", exec.Command(filepath.Join(bin, "sluice-testidp"), args...), filepath.Join(dir, "idp.log"))
	if err != nil {
		return nil, err
	}
	idp := &IdP{URL: "http://" + addr, p: p, dir: dir}
	if err := p.waitReady(30*time.Second, httpOK(idp.URL+"/.well-known/openid-configuration")); err != nil {
		idp.Stop()
		return nil, err
	}
	announce("OpenID provider ready at %s", idp.URL)
	return idp, nil
}

// Rotate makes a new signing key current (of alg, or the provider's own
// algorithm when empty), keeping the old ones in its JWKS, and answers
// the new key's id.
func (i *IdP) Rotate(alg string) (string, error) {
	resp, err := http.Post(i.URL+"/admin/rotate?alg="+alg, "", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b := make([]byte, 256)
	n, _ := resp.Body.Read(b)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("rotate: %s: %s", resp.Status, b[:n])
	}
	return strings.TrimSpace(string(b[:n])), nil
}

// Stop ends the provider by its pid and removes its files.
func (i *IdP) Stop() {
	i.p.stop(syscall.SIGTERM, 5*time.Second)
	announce("stopped sluice-testidp (pid %d)", i.p.cmd.Process.Pid)
	_ = os.RemoveAll(i.dir)
}
