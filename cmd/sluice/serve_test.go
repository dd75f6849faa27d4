package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/launch"
)

type running struct {
	dataDir string
	addrs   map[string]string
	conns   map[string]*grpc.ClientConn
	token   func(tenant string, policies ...string) grpc.CallOption
	// users signs user tokens, services service tokens, as serve trusts.
	users, services *auth.Signer
	servers         map[string]*grpcserver.Server
	// metrics is the URL of /metrics, when the configuration serves it.
	metrics string
	// console is the web console's URL.
	console string
	// stop shuts serve down as SIGTERM does and waits for it.
	stop func()
}

// asServiceFor answers a context that calls as a Sluice service for a user
// of tenant holding policies, as the services call each other.
func (r *running) asServiceFor(t *testing.T, tenant string, policies ...string) context.Context {
	t.Helper()
	svc, err := r.services.MintService("sluice-delivery", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), auth.AuthorizationHeader, "Bearer "+svc)
	if tenant == "" {
		return ctx
	}
	user, err := r.users.Mint("u@"+tenant+".test", tenant, policies, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(ctx, auth.CallerHeader, "Bearer "+user)
}

// startServe runs `sluice serve` in-process on random ports, as the command
// does, and stops it when the test ends.
func startServe(t *testing.T) *running { return startServeWith(t, nil) }

// startServeWith lets a test adjust the configuration first.
func startServeWith(t testing.TB, adjust func(*serveConfig)) *running {
	t.Helper()
	cfg := defaultServeConfig()
	cfg.DataDir = t.TempDir()
	cfg.LogLevel = "error"
	cfg.CredentialAddr, cfg.DestinationAddr, cfg.DeliveryAddr, cfg.ConsoleAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if adjust != nil {
		adjust(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan []launch.Endpoint, 1)
	metricsAt := make(chan net.Addr, 1)
	consoleAt := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- serve(ctx, cfg, func(sv serving) { ready <- sv.eps; metricsAt <- sv.env.MetricsAddr(); consoleAt <- sv.console })
	}()
	r := &running{dataDir: cfg.DataDir, addrs: map[string]string{}, conns: map[string]*grpc.ClientConn{}, servers: map[string]*grpcserver.Server{}}
	select {
	case eps := <-ready:
		if a := <-metricsAt; a != nil {
			r.metrics = "http://" + a.String() + "/metrics"
		}
		r.console = <-consoleAt
		for _, ep := range eps {
			r.addrs[ep.Name] = ep.Listener.Addr().String()
			r.servers[ep.Name] = ep.Server
			creds := insecure.NewCredentials()
			if cfg.TLS.Enabled() {
				// With mutual TLS the test calls with the process's own
				// certificate, checking the service's.
				var err error
				if creds, err = cfg.TLS.Client(ep.Name); err != nil {
					t.Fatal(err)
				}
			}
			cc, err := grpc.NewClient(r.addrs[ep.Name], grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			r.conns[ep.Name] = cc
		}
	case err := <-served:
		t.Fatalf("serve: %v", err)
	}
	var stopOnce sync.Once
	r.stop = func() {
		stopOnce.Do(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("serve did not stop cleanly: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		for _, cc := range r.conns {
			cc.Close()
		}
		r.stop()
	})
	key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(cfg.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	signer := auth.NewSigner(key)
	r.users = signer
	svcKey, err := auth.LoadOrCreateSigningKey(launch.ServiceKeyPath(cfg.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	r.services = auth.NewSigner(svcKey)
	r.token = func(tenant string, policies ...string) grpc.CallOption {
		tok, err := signer.Mint("tester@"+tenant+".test", tenant, policies, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return grpc.PerRPCCredentials(auth.BearerCredentials(tok))
	}
	return r
}

func TestServeHealthForEveryService(t *testing.T) {
	r := startServe(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := checkHealth(ctx, &out, r.addrs, plaintext); err != nil {
		t.Fatalf("health: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), "SERVING"); n != 5 {
		t.Fatalf("%d services SERVING, want 5:\n%s", n, out.String())
	}
}

// Reflection lists each endpoint's services and answers descriptors that
// keep the proto comments, as grpcurl list and describe need.
func TestServeReflectionWithComments(t *testing.T) {
	r := startServe(t)
	ctx := context.Background()
	want := map[string]string{
		"credential":  "sluice.credential.v1.CredentialService",
		"destination": "sluice.destination.v1.DestinationService",
		"delivery":    "sluice.delivery.v1.DeliveryService",
	}
	for name, svc := range want {
		stream, err := reflectionpb.NewServerReflectionClient(r.conns[name]).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, " "), svc) {
			t.Fatalf("%s lists %v, want %s among them", name, names, svc)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: svc}}); err != nil {
			t.Fatal(err)
		}
		resp, err = stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var comments int
		for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			var fd descriptorpb.FileDescriptorProto
			if err := proto.Unmarshal(raw, &fd); err != nil {
				t.Fatal(err)
			}
			for _, loc := range fd.GetSourceCodeInfo().GetLocation() {
				if loc.GetLeadingComments() != "" {
					comments++
				}
			}
		}
		if comments < 10 {
			t.Fatalf("%s: the descriptor of %s carries %d comments; describe would show no documentation", name, svc, comments)
		}
		stream.CloseSend()
	}
}

func TestServeIdentityAndValidation(t *testing.T) {
	r := startServe(t)
	ctx := context.Background()
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	access := credentialv1.NewCredentialAccessServiceClient(r.conns["credential"])
	dests := destinationv1.NewDestinationServiceClient(r.conns["destination"])
	delivs := deliveryv1.NewDeliveryServiceClient(r.conns["delivery"])
	acme := r.token("acme", auth.PolicyAdministrator)
	const prod = "tenants/acme/environments/production"

	t.Run("no token", func(t *testing.T) {
		_, err := creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: prod + "/credentials/c"})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("got %v, want Unauthenticated", err)
		}
	})
	t.Run("malformed requests name their fields", func(t *testing.T) {
		_, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{
			Parent: prod, CredentialId: "Bad_ID", Credential: &credentialv1.Credential{},
		}, acme)
		v := apierror.FromStatus(err).Fields()
		if status.Code(err) != codes.InvalidArgument || v["credential_id"] == "" || v["credential.bucket"] == "" || v["credential.type"] == "" {
			t.Fatalf("got %v with violations %v", err, v)
		}
		_, err = dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{
			Parent: prod, DestinationId: "d",
			Destination: &destinationv1.Destination{
				Credential: "tenants/acme/environments/sandbox/credentials/c",
				Split:      &destinationv1.Split{MaxBytes: 1024},
				Format:     &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: "||"}}},
			},
		}, acme)
		v = apierror.FromStatus(err).Fields()
		for _, f := range []string{"destination.credential", "destination.split.max_bytes", "destination.format.delimited.delimiter"} {
			if v[f] == "" {
				t.Errorf("no violation for %s in %v (%v)", f, v, err)
			}
		}
		stream, err := delivs.Deliver(ctx, acme)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: []byte{1}}}); err != nil {
			t.Fatal(err)
		}
		_, err = stream.CloseAndRecv()
		if status.Code(err) != codes.InvalidArgument || apierror.FromStatus(err).Fields()["start"] == "" {
			t.Fatalf("Deliver without a start: %v", err)
		}
	})
	t.Run("another tenant's resource is NotFound", func(t *testing.T) {
		_, err := creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: "tenants/globex/environments/production/credentials/c"}, acme)
		if status.Code(err) != codes.NotFound {
			t.Fatalf("got %v, want NotFound", err)
		}
	})
	t.Run("internal RPCs refuse user tokens", func(t *testing.T) {
		_, err := access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: prod + "/credentials/c"}, acme)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("MintAccess with a user token: got %v, want PermissionDenied", err)
		}
		_, err = dests.ResolveDestination(ctx, &destinationv1.ResolveDestinationRequest{Name: prod + "/destinations/d"}, acme)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("ResolveDestination with a user token: got %v, want PermissionDenied", err)
		}
	})
	t.Run("force delete needs an administrator", func(t *testing.T) {
		_, err := creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: prod + "/credentials/c", Force: true}, r.token("acme"))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("got %v, want PermissionDenied", err)
		}
	})
}

// Destinations and credentials across real services: a destination's
// credential is checked through the credential service; a credential in use
// is not deleted; access rules decide who sees and sends to a destination.
func TestServeDestinationsAndCredentials(t *testing.T) {
	r := startServe(t)
	ctx := context.Background()
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	dests := destinationv1.NewDestinationServiceClient(r.conns["destination"])
	admin := r.token("acme", auth.PolicyAdministrator)
	plain := r.token("acme")
	restricted := r.token("acme", auth.PolicyRestrictPII)
	const sandbox = "tenants/acme/environments/sandbox"

	cred, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: sandbox, CredentialId: "keys",
		Credential: &credentialv1.Credential{Bucket: "acme-exports", Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	parquet := &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}}
	create := func(id string, access *destinationv1.Access, credential string) (*destinationv1.Destination, error) {
		return dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: sandbox, DestinationId: id,
			Destination: &destinationv1.Destination{Credential: credential, Prefix: "c360/", Format: parquet, Access: access}}, admin)
	}
	d1, err := create("everyone", nil, cred.GetName())
	if err != nil {
		t.Fatal(err)
	}
	d2, err := create("admins", &destinationv1.Access{AdminOnly: true}, cred.GetName())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := create("ghost", nil, sandbox+"/credentials/missing"); status.Code(err) != codes.InvalidArgument || apierror.FromStatus(err).Fields()["destination.credential"] == "" {
		t.Fatalf("a destination on a missing credential: %v", err)
	}

	// Only administrators and operators delete credentials.
	if _, err = creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: cred.GetName()}, plain); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a user deleting a credential: %v, want PermissionDenied", err)
	}
	// The credential is in use: deleting it is refused, naming both.
	_, err = creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: cred.GetName()}, admin)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), d1.GetName()) || !strings.Contains(status.Convert(err).Message(), d2.GetName()) {
		t.Fatalf("deleting a credential in use: %v", err)
	}
	// Issue 9, item 3: an operator under Restrict PII access may see
	// neither destination: the refusal counts them and names none.
	_, err = creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: cred.GetName()}, r.token("acme", auth.PolicyOperator, auth.PolicyRestrictPII))
	if status.Code(err) != codes.FailedPrecondition || strings.Contains(fmt.Sprint(status.Convert(err).Proto()), "destinations/") ||
		!strings.Contains(status.Convert(err).Message(), "2 you cannot see") {
		t.Fatalf("deleting a credential whose destinations the caller cannot see: %v %v", err, status.Convert(err).Details())
	}

	list := func(as grpc.CallOption) []string {
		t.Helper()
		resp, err := dests.ListDestinations(ctx, &destinationv1.ListDestinationsRequest{Parent: sandbox}, as)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, d := range resp.GetDestinations() {
			names = append(names, d.GetName()[strings.LastIndexByte(d.GetName(), '/')+1:])
		}
		return names
	}
	if got := strings.Join(list(admin), ","); got != "admins,everyone" {
		t.Fatalf("an administrator sees %s", got)
	}
	if got := strings.Join(list(plain), ","); got != "everyone" {
		t.Fatalf("a user sees %s", got)
	}
	if got := strings.Join(list(restricted), ","); got != "" {
		t.Fatalf("a user under Restrict PII access sees %s", got)
	}
	if _, err := dests.GetDestination(ctx, &destinationv1.GetDestinationRequest{Name: d2.GetName()}, plain); status.Code(err) != codes.NotFound {
		t.Fatalf("a user reading an admin-only destination: %v", err)
	}

	// The delivery service's one question, for the end caller.
	resolve := func(policies ...string) error {
		callCtx := r.asServiceFor(t, "acme", policies...)
		_, err = dests.ResolveDestination(callCtx, &destinationv1.ResolveDestinationRequest{Name: d1.GetName()})
		return err
	}
	if err := resolve(); err != nil {
		t.Fatalf("resolving for a user: %v", err)
	}
	if err := resolve(auth.PolicyRestrictPII); status.Code(err) != codes.NotFound {
		t.Fatalf("resolving for a restricted user: %v, want NotFound, as a destination that does not exist", err)
	}

	// Allowing limited PII access opens it to restricted users.
	if _, err := dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{
		Destination: &destinationv1.Destination{Name: d1.GetName(), Access: &destinationv1.Access{AllowLimitedPii: true}},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"access"}}, Etag: d1.GetEtag(),
	}, admin); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(list(restricted), ","); got != "everyone" {
		t.Fatalf("after allowing limited PII a restricted user sees %q", got)
	}
	if err := resolve(auth.PolicyRestrictPII); err != nil {
		t.Fatalf("resolving for a restricted user after allowing limited PII: %v", err)
	}

	// Preview: the keys a delivery would write, from the stored settings
	// or from settings being edited.
	csv, err := dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: sandbox, DestinationId: "c360-csv",
		Destination: &destinationv1.Destination{Credential: cred.GetName(), Prefix: "c360/", SuccessFile: true, Manifest: true,
			FilenameTemplate: "C360_{{now|local:'America/Los_Angeles'|format:'MM-dd-yyyy'}}.csv.gz",
			Format:           &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{}}},
			Compression:      &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_GZIP}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	at := timestamppb.New(time.Date(2026, 3, 8, 5, 0, 0, 0, time.UTC)) // still March 7 in Los Angeles
	prev, err := dests.PreviewDestination(ctx, &destinationv1.PreviewDestinationRequest{Target: &destinationv1.PreviewDestinationRequest_Name{Name: csv.GetName()}, Time: at, OutputName: "c360"}, plain)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range prev.GetObjects() {
		keys = append(keys, o.GetKey())
	}
	if prev.GetBucket() != "acme-exports" || strings.Join(keys, " ") != "c360/C360_03-07-2026.csv.gz c360/c360.manifest.json c360/c360.DONE" {
		t.Fatalf("preview: bucket %s, keys %v", prev.GetBucket(), keys)
	}
	inline, err := dests.PreviewDestination(ctx, &destinationv1.PreviewDestinationRequest{Target: &destinationv1.PreviewDestinationRequest_Destination{
		Destination: &destinationv1.Destination{Credential: cred.GetName(), BucketOverride: "other-bucket", Format: parquet, Split: &destinationv1.Split{MaxRows: 1000}}},
		Time: at, OutputName: "audience", FileCount: 2}, plain)
	if err != nil {
		t.Fatal(err)
	}
	if inline.GetBucket() != "other-bucket" || len(inline.GetObjects()) != 2 || inline.GetObjects()[1].GetKey() != "audience/part-00002.parquet" {
		t.Fatalf("inline preview: %v", inline)
	}
	// Partitioned: the folders of an example row, times as of the preview's.
	parted, err := dests.PreviewDestination(ctx, &destinationv1.PreviewDestinationRequest{Target: &destinationv1.PreviewDestinationRequest_Destination{
		Destination: &destinationv1.Destination{Credential: cred.GetName(), BucketOverride: "other-bucket", Format: parquet, PartitionBy: &destinationv1.Partitioning{
			Fields: []*destinationv1.PartitionField{{Column: "country"}, {Column: "signed_up", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_MONTH}}}}},
		Time: at, OutputName: "audience"}, plain)
	if err != nil {
		t.Fatal(err)
	}
	if got := parted.GetObjects()[0].GetKey(); got != "country={country}/signed_up_month="+at.AsTime().Format("2006-01")+"/audience/part-00001.parquet" {
		t.Fatalf("partitioned preview: %q", got)
	}
	if _, err := dests.DeleteDestination(ctx, &destinationv1.DeleteDestinationRequest{Name: csv.GetName()}, admin); err != nil {
		t.Fatal(err)
	}

	// Promotion to production: verified first (or forced by an
	// administrator), onto the production credential of the same id.
	promote := func(force bool, as grpc.CallOption) (*destinationv1.Destination, error) {
		return dests.PromoteDestination(ctx, &destinationv1.PromoteDestinationRequest{Name: d1.GetName(), TargetEnvironment: "production", Force: force}, as)
	}
	if _, err := promote(false, admin); status.Code(err) != codes.FailedPrecondition || apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_NO_SUCCESSFUL_DELIVERY {
		t.Fatalf("promoting an unverified destination: %v", err)
	}
	if _, err := promote(true, plain); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("force by a user: %v", err)
	}
	if _, err := promote(true, admin); status.Code(err) != codes.FailedPrecondition || apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_MISSING_IN_TARGET {
		t.Fatalf("promoting without a production credential: %v", err)
	}
	prodCred, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: "tenants/acme/environments/production", CredentialId: "keys",
		Credential: &credentialv1.Credential{Bucket: "acme-exports-prod", Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	prod, err := promote(true, admin)
	if err != nil {
		t.Fatal(err)
	}
	if prod.GetName() != "tenants/acme/environments/production/destinations/everyone" || prod.GetCredential() != prodCred.GetName() ||
		prod.GetPromotedFrom() != d1.GetName() || prod.GetPrefix() != "c360/" || !prod.GetAccess().GetAllowLimitedPii() {
		t.Fatalf("promoted %v", prod)
	}
	again, err := promote(true, admin)
	if err != nil || again.GetEtag() == "" || !again.GetCreateTime().AsTime().Equal(prod.GetCreateTime().AsTime()) {
		t.Fatalf("promoting again: %v, %v", again, err)
	}
	if _, err := dests.DeleteDestination(ctx, &destinationv1.DeleteDestinationRequest{Name: prod.GetName()}, admin); err != nil {
		t.Fatal(err)
	}

	// Once no destination uses it, the credential goes.
	for _, d := range []string{d1.GetName(), d2.GetName()} {
		if _, err := dests.DeleteDestination(ctx, &destinationv1.DeleteDestinationRequest{Name: d}, admin); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: cred.GetName()}, admin); err != nil {
		t.Fatalf("deleting an unused credential: %v", err)
	}
}

// Issue 9, item 13: SIGTERM under load. The services stop callers first
// (delivery, destination, credential), so a CreateDestination the
// destination service accepted still reaches the credential service: it
// succeeds, or the call was refused before it started; it is never failed
// from inside with "the credential service did not answer".
func TestServeStopsInDependencyOrderUnderLoad(t *testing.T) {
	r := startServe(t)
	ctx := context.Background()
	admin := r.token("acme", auth.PolicyAdministrator)
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	dests := destinationv1.NewDestinationServiceClient(r.conns["destination"])
	const env = "tenants/acme/environments/sandbox"
	cred, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: env, CredentialId: "keys",
		Credential: &credentialv1.Credential{Bucket: "acme-exports", Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}}, admin)
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused, failedInside atomic.Int64
	var wg sync.WaitGroup
	stopping := make(chan struct{})
	for w := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				_, err := dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: env, DestinationId: fmt.Sprintf("d-%d-%d", w, i),
					Destination: &destinationv1.Destination{Credential: cred.GetName(), Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}}}, admin)
				switch {
				case err == nil:
					ok.Add(1)
				case apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
					// An answer from inside a handler: the call was accepted.
					failedInside.Add(1)
					t.Errorf("an accepted call failed during shutdown: %v", err)
				default:
					refused.Add(1) // the transport refused it: not accepted
				}
				select {
				case <-stopping:
					if err != nil {
						return
					}
				default:
				}
			}
		}()
	}
	for ok.Load() < 200 {
		time.Sleep(5 * time.Millisecond)
	}
	close(stopping)
	r.stop()
	wg.Wait()
	t.Logf("during SIGTERM: %d created, %d refused at the door, %d failed inside", ok.Load(), refused.Load(), failedInside.Load())
	if refused.Load() == 0 {
		t.Fatal("no call met the stopping server: the test did not test shutdown under load")
	}
}
