package console

import (
	"io"
	"log/slog"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/launch"
)

// Addrs are where the three services listen.
type Addrs struct{ Credential, Destination, Delivery string }

// Build is the one way the console starts, for its own binary and for
// `sluice serve`: connections to the services that carry only the user's
// token, the process's verifier for logins, and the development login
// when the process trusts the development key. It answers the console and
// what closes with it.
func Build(env *launch.Env, cfg Config, addrs Addrs) (*Server, []io.Closer, error) {
	var closers []io.Closer
	cred, err := env.DialForUser(addrs.Credential, "credential")
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, cred)
	dest, err := env.DialForUser(addrs.Destination, "destination")
	if err != nil {
		return nil, closers, err
	}
	closers = append(closers, dest)
	deliv, err := env.DialForUser(addrs.Delivery, "delivery")
	if err != nil {
		return nil, closers, err
	}
	closers = append(closers, deliv)
	cfg.Verifier = env.Verifier
	if cfg.DevSigner == nil {
		cfg.DevSigner = env.DevUsers
	}
	s, err := New(cfg, Peers{
		Credentials:  credentialv1.NewCredentialServiceClient(cred),
		Destinations: destinationv1.NewDestinationServiceClient(dest),
		Deliveries:   deliveryv1.NewDeliveryServiceClient(deliv),
		Workflows:    deliveryv1.NewWorkflowServiceClient(deliv),
	}, env.Logger.With(slog.String("component", "console")))
	return s, closers, err
}
