package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/mtls"
)

func tlsOf(dir, name string) mtls.Config {
	return mtls.Config{Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem"), CA: filepath.Join(dir, "ca.pem")}
}

// With certificates from `sluice certs`, the services speak mutual TLS:
// a delivery lands through a client with its certificate (the delivery
// service reaching the destination and credential services over mTLS);
// a plaintext client, a client without a certificate, and one of another
// CA are refused; a client that means to reach the credential service
// refuses a server whose certificate names another service; and without
// TLS nothing listens beyond loopback.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	if err := mtls.MakeDevelopment(dir, []string{"serve", "destination", "cli"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := mtls.MakeDevelopment(other, []string{"cli"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	w := startWorkflows(t, func(c *serveConfig) { c.TLS = tlsOf(dir, "serve") })
	recs := customerBatches(t, 2000, 500)
	dest := w.destination(t, "over-tls", &destinationv1.Destination{Format: csvFormat()})
	d, err := deliverclient.DeliverStream(context.Background(), w.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName()},
		bytes.NewReader(ipcBytes(t, recs[0].Schema(), recs...)), deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	if err != nil || d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED {
		t.Fatalf("a delivery over mutual TLS: %v %v", d.GetState(), err)
	}

	check := func(addr string, creds credentials.TransportCredentials) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(false))
		return err
	}
	cli, err := tlsOf(dir, "cli").Client("delivery")
	if err != nil {
		t.Fatal(err)
	}
	if err := check(w.r.addrs["delivery"], cli); err != nil {
		t.Fatalf("a client with its certificate: %v", err)
	}
	// The probe a container runs: sluice health for one service, over mTLS.
	var probe bytes.Buffer
	if err := checkHealth(context.Background(), &probe, map[string]string{"delivery": w.r.addrs["delivery"]}, tlsOf(dir, "cli").Client); err != nil ||
		strings.Count(probe.String(), "SERVING") != 2 {
		t.Errorf("sluice health --service delivery over mTLS: %v\n%s", err, probe.String())
	}
	noCert, err := (mtls.Config{Cert: filepath.Join(other, "cli.pem"), Key: filepath.Join(other, "cli-key.pem"), CA: filepath.Join(dir, "ca.pem")}).Client("delivery")
	if err != nil {
		t.Fatal(err)
	}
	for name, creds := range map[string]credentials.TransportCredentials{"plaintext": insecure.NewCredentials(), "a certificate of another CA": noCert} {
		if err := check(w.r.addrs["delivery"], creds); err == nil {
			t.Errorf("a client with %s was served", name)
		}
	}

	// The peer's identity: a server whose certificate names the
	// destination service is not the credential service.
	destCreds, err := tlsOf(dir, "destination").Server()
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(destCreds))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	asCredential, _ := tlsOf(dir, "cli").Client("credential")
	err = check(lis.Addr().String(), asCredential)
	if err == nil || !strings.Contains(err.Error(), "sluice-credential") {
		t.Errorf("a client of the credential service reached the destination service's certificate: %v", err)
	}
	asDestination, _ := tlsOf(dir, "cli").Client("destination")
	if err := check(lis.Addr().String(), asDestination); err != nil {
		t.Errorf("a client of the destination service: %v", err)
	}

	// Without TLS, nothing is served beyond loopback.
	cfg := defaultServeConfig()
	cfg.DataDir, cfg.LogOutput = t.TempDir(), &syncBuffer{}
	cfg.CredentialAddr, cfg.DestinationAddr, cfg.DeliveryAddr = "127.0.0.1:0", "127.0.0.1:0", "0.0.0.0:0"
	if err := serve(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "only served on loopback") {
		t.Errorf("plaintext on every interface: %v", err)
	}
}
