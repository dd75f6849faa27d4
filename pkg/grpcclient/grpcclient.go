// Package grpcclient dials Sluice services the one way they are dialled
// everywhere: OpenTelemetry propagation, the calling service's token, and the
// end caller's token carried on beside it.
package grpcclient

import (
	"context"
	"fmt"
	"time"

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
		grpc.WithChainUnaryInterceptor(Bounded(CallTimeout), auth.UnaryClientInterceptor(tokens)),
		grpc.WithChainStreamInterceptor(auth.StreamClientInterceptor(tokens)),
	}
	cc, err := grpc.NewClient(target, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return cc, nil
}

// CallTimeout bounds every call one service makes to another: a peer that
// hangs must not hold a delivery, a resolution or the sweeper without
// bound (#22: MintAccess waited 13 minutes on a hung STS).
var CallTimeout = 30 * time.Second

// Bounded gives every unary call a deadline of at most d (a caller's
// earlier one stands).
func Bounded(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
