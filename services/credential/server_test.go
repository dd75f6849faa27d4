package credential

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	platformARN = "arn:aws:iam::111122223333:role/sluice-platform"
	parent      = "tenants/acme/environments/production"
	// A secret shaped like a real one, searched for wherever it must not be.
	secret  = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	rotated = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"
)

type fixture struct {
	svc    *Service
	grpc   *testenv.GRPC
	client credentialv1.CredentialServiceClient
	admin  grpc.CallOption
}

func start(t *testing.T, dsn string) *fixture {
	t.Helper()
	svc, err := New(context.Background(), Config{
		DatabaseDSN:     dsn,
		PlatformRoleARN: platformARN,
		MasterKeyFile:   filepath.Join(t.TempDir(), "master.key"),
	}, Peers{Destinations: destinationv1.NewDestinationServiceClient(nil)})
	if err != nil {
		t.Fatal(err)
	}
	g := testenv.StartGRPC(t, func(srv *grpcserver.Server, peer *grpc.ClientConn) {
		svc.peers = Peers{Destinations: destinationv1.NewDestinationServiceClient(peer)}
		svc.Register(srv)
	})
	return &fixture{svc: svc, grpc: g, client: credentialv1.NewCredentialServiceClient(g.Conn), admin: g.As(t, "acme", auth.PolicyAdministrator)}
}

func roleToRole(bucket string) *credentialv1.Credential {
	return &credentialv1.Credential{
		DisplayName: "Exports", Bucket: bucket, Prefix: "exports/",
		Type: &credentialv1.Credential_RoleToRole{RoleToRole: &credentialv1.RoleToRole{
			TargetRoleArn: "arn:aws:iam::444455556666:role/sluice-export",
			ExternalId:    "caller-chosen", // output only: ignored
		}},
	}
}

func accessKey() *credentialv1.Credential {
	return &credentialv1.Credential{
		Bucket: "acme-exports",
		Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: secret,
		}},
	}
}

func TestCredentials(t *testing.T) {
	spans := testenv.RecordSpans(t)
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := start(t, b.DSN(t))
			t.Run("RoleToRole", f.testRoleToRole)
			t.Run("AccessKeySecretIsWriteOnly", f.testAccessKey)
			t.Run("ListPages", f.testList)
			t.Run("Update", f.testUpdate)
			t.Run("Delete", f.testDelete)
			t.Run("OtherTenantsSeeNothing", f.testTenancy)
			t.Run("Validation", f.testValidation)
			// Whatever happened above, the secrets never reached a log or
			// a span.
			traced := testenv.SpanText(spans.Ended())
			if !strings.Contains(traced, "sluice.credential.v1.CredentialService/CreateCredential") {
				t.Fatalf("no spans recorded; the check below would prove nothing:\n%s", traced)
			}
			for _, s := range []string{secret, rotated} {
				if strings.Contains(f.grpc.Logs(), s) {
					t.Fatal("a secret reached the logs")
				}
				if strings.Contains(traced, s) {
					t.Fatal("a secret reached a span")
				}
			}
		})
	}
}

func (f *fixture) testRoleToRole(t *testing.T) {
	ctx := context.Background()
	c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{
		Parent: parent, CredentialId: "role", Credential: roleToRole("acme-exports"),
	}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	r := c.GetRoleToRole()
	if c.GetName() != parent+"/credentials/role" || r.GetPlatformRoleArn() != platformARN || c.GetEtag() == "" {
		t.Fatalf("created %v", c)
	}
	if id := r.GetExternalId(); len(id) != externalIDLength || strings.Trim(id, externalIDAlphabet) != "" || id == "caller-chosen" {
		t.Fatalf("external id %q: want %d generated characters of the alphabet", id, externalIDLength)
	}
	var trust struct {
		Statement []struct {
			Principal map[string]string
			Action    string
			Condition map[string]map[string]string
		}
	}
	if err := json.Unmarshal([]byte(r.GetTrustPolicyJson()), &trust); err != nil {
		t.Fatalf("trust policy is not JSON: %v", err)
	}
	st := trust.Statement[0]
	if st.Principal["AWS"] != platformARN || st.Action != "sts:AssumeRole" || st.Condition["StringEquals"]["sts:ExternalId"] != r.GetExternalId() {
		t.Fatalf("trust policy %s", r.GetTrustPolicyJson())
	}
	perms := r.GetPermissionsPolicyJson()
	if !strings.Contains(perms, `"arn:aws:s3:::acme-exports/exports/*"`) || !strings.Contains(perms, `"s3:PutObject"`) || strings.Contains(perms, `"s3:*"`) {
		t.Fatalf("permissions policy %s", perms)
	}

	again, err := f.client.RegenerateExternalId(ctx, &credentialv1.RegenerateExternalIdRequest{Name: c.GetName(), Etag: c.GetEtag()}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetRoleToRole().GetExternalId() == r.GetExternalId() || !strings.Contains(again.GetRoleToRole().GetTrustPolicyJson(), again.GetRoleToRole().GetExternalId()) {
		t.Fatal("RegenerateExternalId kept the External ID or the trust policy did not follow")
	}
	if _, err := f.client.RegenerateExternalId(ctx, &credentialv1.RegenerateExternalIdRequest{Name: c.GetName(), Etag: c.GetEtag()}, f.admin); status.Code(err) != codes.Aborted {
		t.Fatalf("RegenerateExternalId with a stale etag: %v, want Aborted", err)
	}
}

func (f *fixture) testAccessKey(t *testing.T) {
	ctx := context.Background()
	c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{
		Parent: parent, CredentialId: "keys", Credential: accessKey(),
	}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.client.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: c.GetName()}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, resp := range []*credentialv1.Credential{c, got} {
		a := resp.GetAccessKey()
		if a.GetSecretAccessKey() != "" || !a.GetSecretSet() || a.GetSecretUpdateTime() == nil || strings.Contains(resp.String(), secret) {
			t.Fatalf("a response carries the secret or hides that it is set: %v", resp)
		}
	}
	// Sealed at rest, bound to this credential's name.
	sealed, err := f.svc.store.Secret(ctx, c.GetName())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), secret) {
		t.Fatal("the secret is stored in the clear")
	}
	opened, err := f.svc.cfg.Sealer.Open(ctx, sealed, c.GetName())
	if err != nil || string(opened) != secret {
		t.Fatalf("the sealed secret does not open to the one sent: %v", err)
	}
	if _, err := f.svc.cfg.Sealer.Open(ctx, sealed, parent+"/credentials/other"); err == nil {
		t.Fatal("a sealed secret opened under another credential's name")
	}
	if _, err := f.client.RegenerateExternalId(ctx, &credentialv1.RegenerateExternalIdRequest{Name: c.GetName()}, f.admin); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("RegenerateExternalId on access keys: %v, want FailedPrecondition", err)
	}
}

func (f *fixture) testList(t *testing.T) {
	ctx := context.Background()
	const other = "tenants/acme/environments/sandbox"
	for _, id := range []string{"a", "b", "c"} {
		if _, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: other, CredentialId: id, Credential: accessKey()}, f.admin); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	token := ""
	for range 3 {
		resp, err := f.client.ListCredentials(ctx, &credentialv1.ListCredentialsRequest{Parent: other, PageSize: 2, PageToken: token}, f.admin)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.GetCredentials() {
			names = append(names, c.GetName())
			if c.GetAccessKey().GetSecretAccessKey() != "" {
				t.Fatal("List returned a secret")
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if got := strings.Join(names, ","); got != other+"/credentials/a,"+other+"/credentials/b,"+other+"/credentials/c" {
		t.Fatalf("listed %s", got)
	}
	_, err := f.client.ListCredentials(ctx, &credentialv1.ListCredentialsRequest{Parent: parent, PageToken: pageTokenFor(t, f, other)}, f.admin)
	if status.Code(err) != codes.InvalidArgument || apierror.FromStatus(err).Fields()["page_token"] == "" {
		t.Fatalf("a token of another parent: %v", err)
	}
}

func pageTokenFor(t *testing.T, f *fixture, p string) string {
	resp, err := f.client.ListCredentials(context.Background(), &credentialv1.ListCredentialsRequest{Parent: p, PageSize: 1}, f.admin)
	if err != nil || resp.GetNextPageToken() == "" {
		t.Fatalf("want a next page token: %v", err)
	}
	return resp.GetNextPageToken()
}

func (f *fixture) testUpdate(t *testing.T) {
	ctx := context.Background()
	c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "upd", Credential: accessKey()}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	u, err := f.client.UpdateCredential(ctx, &credentialv1.UpdateCredentialRequest{
		Credential: &credentialv1.Credential{Name: c.GetName(), Description: "rotated", Bucket: "ignored-bucket",
			Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{SecretAccessKey: rotated}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description", "access_key.secret_access_key"}},
		Etag:       c.GetEtag(),
	}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetDescription() != "rotated" || u.GetBucket() != "acme-exports" || u.GetAccessKey().GetAccessKeyId() != "AKIAIOSFODNN7EXAMPLE" {
		t.Fatalf("update touched fields outside the mask or missed one: %v", u)
	}
	if !u.GetAccessKey().GetSecretUpdateTime().AsTime().After(c.GetAccessKey().GetSecretUpdateTime().AsTime()) {
		t.Fatal("rotating the secret did not move secret_update_time")
	}
	sealed, _ := f.svc.store.Secret(ctx, c.GetName())
	if opened, err := f.svc.cfg.Sealer.Open(ctx, sealed, c.GetName()); err != nil || string(opened) != rotated {
		t.Fatalf("after rotation the stored secret is not the new one: %v", err)
	}
	_, err = f.client.UpdateCredential(ctx, &credentialv1.UpdateCredentialRequest{
		Credential: &credentialv1.Credential{Name: c.GetName(), Description: "stale"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}, Etag: c.GetEtag(),
	}, f.admin)
	if status.Code(err) != codes.Aborted {
		t.Fatalf("stale etag: %v, want Aborted", err)
	}
	for _, tc := range []struct {
		paths []string
		cred  *credentialv1.Credential
	}{
		{[]string{"role_to_role.target_role_arn"}, &credentialv1.Credential{Name: c.GetName()}},
		{[]string{"etag"}, &credentialv1.Credential{Name: c.GetName()}},
		{[]string{"bucket"}, &credentialv1.Credential{Name: c.GetName(), Bucket: "Not_A_Bucket"}},
	} {
		_, err := f.client.UpdateCredential(ctx, &credentialv1.UpdateCredentialRequest{Credential: tc.cred, UpdateMask: &fieldmaskpb.FieldMask{Paths: tc.paths}}, f.admin)
		if status.Code(err) != codes.InvalidArgument || len(apierror.FromStatus(err).Fields()) == 0 {
			t.Errorf("update of %v: %v, want InvalidArgument with a field violation", tc.paths, err)
		}
	}
}

func (f *fixture) testDelete(t *testing.T) {
	ctx := context.Background()
	c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "del", Credential: accessKey()}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	// The check that no destination uses the credential needs the
	// destination service; cmd/sluice tests it with all three wired. Force
	// (administrators only) skips it.
	if _, err := f.client.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: c.GetName(), Etag: "stale", Force: true}, f.admin); status.Code(err) != codes.Aborted {
		t.Fatalf("delete with a stale etag: %v", err)
	}
	if _, err := f.client.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: c.GetName(), Etag: c.GetEtag(), Force: true}, f.grpc.As(t, "acme")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("force delete by a non-administrator: %v", err)
	}
	if _, err := f.client.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: c.GetName(), Etag: c.GetEtag(), Force: true}, f.admin); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: c.GetName()}, f.admin); status.Code(err) != codes.NotFound {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := f.svc.store.Secret(ctx, c.GetName()); err == nil {
		t.Fatal("the secret outlived its credential")
	}
}

func (f *fixture) testTenancy(t *testing.T) {
	ctx := context.Background()
	c, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "mine", Credential: accessKey()}, f.admin)
	if err != nil {
		t.Fatal(err)
	}
	globex := f.grpc.As(t, "globex", auth.PolicyAdministrator)
	_, errExisting := f.client.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: c.GetName()}, globex)
	_, errMissing := f.client.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: parent + "/credentials/nothing-here"}, f.admin)
	if status.Code(errExisting) != codes.NotFound || status.Code(errMissing) != codes.NotFound {
		t.Fatalf("another tenant's credential: %v; a missing one: %v; want NotFound for both", errExisting, errMissing)
	}
	if _, err := f.client.ListCredentials(ctx, &credentialv1.ListCredentialsRequest{Parent: parent}, globex); status.Code(err) != codes.NotFound {
		t.Fatalf("listing another tenant: %v", err)
	}
	if _, err := f.client.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: c.GetName(), Force: true}, globex); status.Code(err) != codes.NotFound {
		t.Fatalf("deleting another tenant's credential: %v", err)
	}
}

func (f *fixture) testValidation(t *testing.T) {
	ctx := context.Background()
	bad := &credentialv1.Credential{
		Bucket: "arn:aws:s3:eu-west-1:123456789012:accesspoint/exports", Region: "us-east-1", Prefix: "/abs",
		Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: "akia-lower", SecretAccessKey: "short", RoleArn: "arn:aws:iam::1:role/x",
		}},
	}
	_, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "bad", Credential: bad}, f.admin)
	v := apierror.FromStatus(err).Fields()
	for _, field := range []string{"credential.region", "credential.prefix", "credential.access_key.access_key_id", "credential.access_key.secret_access_key", "credential.access_key.role_arn"} {
		if v[field] == "" {
			t.Errorf("no violation for %s; got %v", field, v)
		}
	}
	if strings.Contains(status.Convert(err).String(), "short") {
		t.Error("the error echoes the secret that was sent")
	}
	_, err = f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "bad", Credential: roleToRole("192.168.0.1")}, f.admin)
	if apierror.FromStatus(err).Fields()["credential.bucket"] == "" {
		t.Errorf("an IP address as bucket: %v", err)
	}
	// Issue 9, items 9 and 10: a prefix that widens the pasted policy or
	// climbs, a region no partition has, text that hides characters.
	for field, change := range map[string]func(*credentialv1.Credential){
		"credential.prefix":       func(c *credentialv1.Credential) { c.Prefix = "exports/*" },
		"credential.prefix ":      func(c *credentialv1.Credential) { c.Prefix = "${aws:username}/" },
		"credential.prefix  ":     func(c *credentialv1.Credential) { c.Prefix = "exports/../" },
		"credential.region":       func(c *credentialv1.Credential) { c.Region = "zz-fake-9" },
		"credential.display_name": func(c *credentialv1.Credential) { c.DisplayName = "prod\u202e" },
		"credential.description":  func(c *credentialv1.Credential) { c.Description = "bell\a" },
	} {
		c := roleToRole("acme-exports")
		change(c)
		_, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "bad", Credential: c}, f.admin)
		if apierror.FromStatus(err).Fields()[strings.TrimSpace(field)] == "" {
			t.Errorf("%s: %v", field, err)
		}
	}
	if _, err := f.client.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "role", Credential: roleToRole("acme-exports")}, f.admin); status.Code(err) != codes.AlreadyExists {
		t.Errorf("a taken id: %v, want AlreadyExists", err)
	}
}
