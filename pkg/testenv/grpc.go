package testenv

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/grpcclient"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/logging"
)

// GRPC is a Sluice gRPC server running in the test process on a real
// 127.0.0.1 listener, built the way production builds it.
type GRPC struct {
	// Conn reaches the server.
	Conn *grpc.ClientConn
	// Signer mints user tokens the server trusts.
	Signer *auth.Signer
	// ServiceSigner mints service tokens the server trusts.
	ServiceSigner *auth.Signer
	logs          *logBuffer
}

// StartGRPC builds a server with grpcserver, lets register add services,
// serves, and stops everything when the test ends. register also gets peer,
// a connection to this same server that calls as a Sluice service (carrying
// the end caller's token on), for services that call each other.
func StartGRPC(t *testing.T, register func(srv *grpcserver.Server, peer *grpc.ClientConn)) *GRPC {
	t.Helper()
	g := &GRPC{Signer: auth.NewSigner(newKey(t)), ServiceSigner: auth.NewSigner(newKey(t)), logs: &logBuffer{}}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		UserKeys: []ed25519.PublicKey{g.Signer.PublicKey()}, ServiceKeys: []ed25519.PublicKey{g.ServiceSigner.PublicKey()},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcserver.New(grpcserver.Config{
		Logger:          logging.New(g.logs, slog.LevelDebug, "test"),
		Verifier:        verifier,
		ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := grpcclient.Dial(lis.Addr().String(), auth.NewServiceTokens(g.ServiceSigner, "sluice-test-peer"), nil)
	if err != nil {
		t.Fatal(err)
	}
	register(srv, peer)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	g.Conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g.Conn.Close()
		peer.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return g
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// As answers a call option that authenticates as a user of tenant holding
// policies.
func (g *GRPC) As(t testing.TB, tenant string, policies ...string) grpc.CallOption {
	t.Helper()
	tok, err := g.Signer.Mint("user@"+tenant+".test", tenant, policies, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return grpc.PerRPCCredentials(auth.BearerCredentials(tok))
}

// AsServiceFor answers a context that calls as a Sluice service on behalf of
// a user of tenant, as services call each other.
func (g *GRPC) AsServiceFor(t testing.TB, tenant string, policies ...string) context.Context {
	t.Helper()
	svc, err := auth.NewServiceTokens(g.ServiceSigner, "sluice-test-service").Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	user, err := g.Signer.Mint("user@"+tenant+".test", tenant, policies, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(context.Background(),
		auth.AuthorizationHeader, "Bearer "+svc, auth.CallerHeader, "Bearer "+user)
}

// Logs answers everything the server logged so far.
func (g *GRPC) Logs() string { return g.logs.String() }

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
