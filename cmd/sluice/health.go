package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/mtls"
)

// servicesAt names the gRPC services each `sluice serve` endpoint serves.
var servicesAt = map[string][]string{
	"credential":  {credentialv1.CredentialService_ServiceDesc.ServiceName, credentialv1.CredentialAccessService_ServiceDesc.ServiceName},
	"destination": {destinationv1.DestinationService_ServiceDesc.ServiceName},
	"delivery":    {deliveryv1.DeliveryService_ServiceDesc.ServiceName, deliveryv1.WorkflowService_ServiceDesc.ServiceName},
}

func healthCommand() *cobra.Command {
	cfg := defaultServeConfig()
	var (
		only    string
		tlsConf mtls.Config
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check the gRPC health of running services (a container's probe: --service NAME)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			addrs := map[string]string{"credential": cfg.CredentialAddr, "destination": cfg.DestinationAddr, "delivery": cfg.DeliveryAddr}
			if only != "" {
				if _, ok := addrs[only]; !ok {
					return usageError("--service %q: want credential, destination or delivery", only)
				}
				addrs = map[string]string{only: addrs[only]}
			}
			if err := tlsConf.Check(); err != nil {
				return usageError("%v", err)
			}
			return checkHealth(ctx, cmd.OutOrStdout(), addrs, func(service string) (credentials.TransportCredentials, error) {
				if !tlsConf.Enabled() {
					return insecure.NewCredentials(), nil
				}
				return tlsConf.Client(service)
			})
		},
	}
	cmd.Flags().StringVar(&cfg.CredentialAddr, "credential-addr", cfg.CredentialAddr, "address of the credential service")
	cmd.Flags().StringVar(&cfg.DestinationAddr, "destination-addr", cfg.DestinationAddr, "address of the destination service")
	cmd.Flags().StringVar(&cfg.DeliveryAddr, "delivery-addr", cfg.DeliveryAddr, "address of the delivery service")
	cmd.Flags().StringVar(&only, "service", "", "check only this service: credential, destination or delivery")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for an answer")
	tlsConf.AddFlags(cmd.Flags())
	return cmd
}

// checkHealth asks each endpoint's standard health service about each of its
// gRPC services, printing one line per service.
func checkHealth(ctx context.Context, w io.Writer, addrs map[string]string, creds func(service string) (credentials.TransportCredentials, error)) error {
	var errs []error
	for _, name := range []string{"credential", "destination", "delivery"} {
		addr, ok := addrs[name]
		if !ok {
			continue
		}
		tc, err := creds(name)
		if err != nil {
			return err
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tc))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s at %s: %w", name, addr, err))
			continue
		}
		client := healthpb.NewHealthClient(cc)
		for _, svc := range servicesAt[name] {
			resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: svc}, grpc.WaitForReady(true))
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s at %s: %w", svc, addr, err))
			case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
				errs = append(errs, fmt.Errorf("%s at %s is %s", svc, addr, resp.GetStatus()))
			default:
				fmt.Fprintf(w, "  %-45s %-16s SERVING\n", svc, addr)
			}
		}
		cc.Close()
	}
	return errors.Join(errs...)
}

// plaintext is the transport of services on loopback without TLS.
func plaintext(string) (credentials.TransportCredentials, error) {
	return insecure.NewCredentials(), nil
}
