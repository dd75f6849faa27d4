package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
)

// servicesAt names the gRPC services each `sluice serve` endpoint serves.
var servicesAt = map[string][]string{
	"credential":  {credentialv1.CredentialService_ServiceDesc.ServiceName, credentialv1.CredentialAccessService_ServiceDesc.ServiceName},
	"destination": {destinationv1.DestinationService_ServiceDesc.ServiceName},
	"delivery":    {deliveryv1.DeliveryService_ServiceDesc.ServiceName, deliveryv1.WorkflowService_ServiceDesc.ServiceName},
}

func healthCommand() *cobra.Command {
	cfg := defaultServeConfig()
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check the gRPC health of running services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			return checkHealth(ctx, cmd.OutOrStdout(), map[string]string{
				"credential": cfg.CredentialAddr, "destination": cfg.DestinationAddr, "delivery": cfg.DeliveryAddr,
			})
		},
	}
	cmd.Flags().StringVar(&cfg.CredentialAddr, "credential-addr", cfg.CredentialAddr, "address of the credential service")
	cmd.Flags().StringVar(&cfg.DestinationAddr, "destination-addr", cfg.DestinationAddr, "address of the destination service")
	cmd.Flags().StringVar(&cfg.DeliveryAddr, "delivery-addr", cfg.DeliveryAddr, "address of the delivery service")
	return cmd
}

// checkHealth asks each endpoint's standard health service about each of its
// gRPC services, printing one line per service.
func checkHealth(ctx context.Context, w io.Writer, addrs map[string]string) error {
	var errs []error
	for _, name := range []string{"credential", "destination", "delivery"} {
		addr := addrs[name]
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
