// Package mtls is mutual TLS between Sluice's services: every server asks
// its callers for a certificate from the configured CA, and every client
// checks that the server it dialled is the service it meant to reach,
// whose certificate names it (DNS name `sluice-{service}`). It also makes
// a local CA and certificates for development (`sluice certs`).
package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"
)

// Config names the PEM files of a process's certificate, its key, and the
// CA its peers' certificates must chain to. All empty: plaintext.
type Config struct {
	Cert, Key, CA string
}

// AddFlags registers --tls-cert, --tls-key and --tls-ca on fs.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Cert, "tls-cert", c.Cert, "this process's certificate (PEM); with --tls-key and --tls-ca the services speak mutual TLS")
	fs.StringVar(&c.Key, "tls-key", c.Key, "the certificate's private key (PEM)")
	fs.StringVar(&c.CA, "tls-ca", c.CA, "the CA (PEM) every peer's certificate must chain to")
}

// Enabled reports whether TLS is configured; a partial configuration is
// an error of Check.
func (c Config) Enabled() bool { return c.Cert != "" || c.Key != "" || c.CA != "" }

// Check answers an error when only some of the files are given.
func (c Config) Check() error {
	if c.Enabled() && (c.Cert == "" || c.Key == "" || c.CA == "") {
		return errors.New("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca")
	}
	return nil
}

// ServiceName is the DNS name a service's certificate carries, which its
// callers verify: sluice-credential, sluice-destination, sluice-delivery.
func ServiceName(service string) string { return "sluice-" + service }

func (c Config) load() (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	pem, err := os.ReadFile(c.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return tls.Certificate{}, nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", c.CA)
	}
	return cert, pool, nil
}

// Server answers the transport credentials of a server: TLS 1.3 with a
// client certificate from the CA required of every caller.
func (c Config) Server() (credentials.TransportCredentials, error) {
	cert, pool, err := c.load()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		MinVersion: tls.VersionTLS13,
	}), nil
}

// Client answers the transport credentials of a client of service: its
// own certificate, and the server's verified against the CA and against
// the service's name, so that a connection to anything else (another
// service's certificate included) fails.
func (c Config) Client(service string) (credentials.TransportCredentials, error) {
	cert, pool, err := c.load()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: ServiceName(service),
		MinVersion: tls.VersionTLS13,
	}), nil
}

// Loopback reports whether a listen address is on loopback only, where
// plaintext is allowed.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// MakeDevelopment writes a development CA and a certificate for each of
// names into dir: ca.pem (and ca-key.pem), then {name}.pem and
// {name}-key.pem. A name is a service (its certificate carries
// sluice-{name}), serve (all three, for sluice serve) or any client (the
// CLI). Every certificate also carries localhost and 127.0.0.1, and lasts
// valid.
func MakeDevelopment(dir string, names []string, valid time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "Sluice development CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(valid),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER, 0o644); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, "ca-key.pem"), caKey); err != nil {
		return err
	}
	for _, name := range names {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		dns := []string{ServiceName(name), "localhost"}
		if name == "serve" {
			// sluice serve runs the three services in one process.
			dns = []string{ServiceName("credential"), ServiceName("destination"), ServiceName("delivery"), "localhost"}
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(), Subject: pkix.Name{CommonName: ServiceName(name)},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(valid),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:    dns, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".pem"), "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
		if err := writeKey(filepath.Join(dir, name+"-key.pem"), key); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}
