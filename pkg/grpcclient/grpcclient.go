// Package grpcclient dials Sluice services the one way they are dialled
// everywhere: OpenTelemetry propagation, the calling service's token, and the
// end caller's token carried on beside it.
package grpcclient

import (
	"fmt"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/pkg/auth"
)

// Dial connects lazily to target (host:port). With tls nil the connection
// is plaintext, for loopback; tokens supplies the service's own token.
func Dial(target string, tokens auth.TokenSource, tls credentials.TransportCredentials, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if tls == nil {
		tls = insecure.NewCredentials()
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(tls),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithChainUnaryInterceptor(auth.UnaryClientInterceptor(tokens)),
		grpc.WithChainStreamInterceptor(auth.StreamClientInterceptor(tokens)),
	}
	cc, err := grpc.NewClient(target, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return cc, nil
}
