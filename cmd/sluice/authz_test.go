package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/services/credential"
	"github.com/sluicehq/sluice/services/delivery"
	"github.com/sluicehq/sluice/services/destination"
)

var updateReadme = flag.Bool("update-readme", false, "rewrite the README's authorization table from the rules")

// personas are the columns of the README's authorization table.
var personas = []struct {
	name   string
	caller *auth.Caller
}{
	{"Datagrid Administrator", &auth.Caller{Subject: "a", Tenant: "acme", Policies: []string{auth.PolicyAdministrator}}},
	{"Datagrid Operator", &auth.Caller{Subject: "o", Tenant: "acme", Policies: []string{auth.PolicyOperator}}},
	{"no policy", &auth.Caller{Subject: "u", Tenant: "acme"}},
	{"Restrict PII access", &auth.Caller{Subject: "r", Tenant: "acme", Policies: []string{auth.PolicyRestrictPII}}},
	{"Sluice service for itself", &auth.Caller{Subject: "sluice-delivery", Service: "sluice-delivery"}},
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// authorizationTable renders what each policy may do from the method rule
// tables and the per-resource decision functions themselves, so that the
// README cannot drift from the code.
func authorizationTable() string {
	method := func(rules auth.Rules, m string) func(*auth.Caller) string {
		return func(c *auth.Caller) string { return yesNo(rules[m].Allows(c)) }
	}
	use := func(a *destinationv1.Access) func(*auth.Caller) string {
		return func(c *auth.Caller) string {
			for _, m := range []string{
				deliveryv1.DeliveryService_Deliver_FullMethodName, deliveryv1.DeliveryService_ListDeliveries_FullMethodName,
				deliveryv1.DeliveryService_CancelDelivery_FullMethodName, deliveryv1.DeliveryService_WatchDelivery_FullMethodName,
				deliveryv1.WorkflowService_GetWorkflow_FullMethodName, deliveryv1.WorkflowService_ResolveWorkflow_FullMethodName,
				deliveryv1.WorkflowService_ListNotifications_FullMethodName, deliveryv1.WorkflowService_AcknowledgeNotification_FullMethodName,
			} {
				if !delivery.Rules[m].Allows(c) {
					return "no"
				}
			}
			if !destination.Rules[destinationv1.DestinationService_GetDestination_FullMethodName].Allows(c) {
				return "no"
			}
			return yesNo(destination.MayUse(c, &destinationv1.Destination{Access: a}))
		}
	}
	rows := []struct {
		action string
		cell   func(*auth.Caller) string
	}{
		{"create, update (rotate), regenerate External ID of, delete a credential", func(c *auth.Caller) string {
			ok := true
			for _, m := range []string{
				credentialv1.CredentialService_CreateCredential_FullMethodName,
				credentialv1.CredentialService_UpdateCredential_FullMethodName,
				credentialv1.CredentialService_RegenerateExternalId_FullMethodName,
				credentialv1.CredentialService_DeleteCredential_FullMethodName,
			} {
				ok = ok && credential.Rules[m].Allows(c)
			}
			return yesNo(ok)
		}},
		{"get, list, test a credential", func(c *auth.Caller) string {
			if !credential.Rules[credentialv1.CredentialService_GetCredential_FullMethodName].Allows(c) {
				return "no"
			}
			if credential.MayRead(c, false) {
				return "yes"
			}
			if credential.MayRead(c, true) {
				return "those under a destination they may use"
			}
			return "no"
		}},
		{"mint short-lived access (MintAccess)", method(credential.Rules, credentialv1.CredentialAccessService_MintAccess_FullMethodName)},
		{"see, create, change, test, preview, deliver to a destination, and see, watch and cancel its deliveries, see its workflows and notifications and resolve them (default access)", use(nil)},
		{"... to an admin only destination", use(&destinationv1.Access{AdminOnly: true})},
		{"... to a destination allowing limited PII access", use(&destinationv1.Access{AllowLimitedPii: true})},
		{"... to an admin only destination allowing limited PII access", use(&destinationv1.Access{AdminOnly: true, AllowLimitedPii: true})},
		{"force a promotion or a credential's deletion", func(c *auth.Caller) string { return yesNo(c.IsAdmin()) }},
		{"ask whether a caller may use a destination (ResolveDestination)", method(destination.Rules, destinationv1.DestinationService_ResolveDestination_FullMethodName)},
		{"record a successful delivery on a destination (RecordDelivery)", method(destination.Rules, destinationv1.DestinationService_RecordDelivery_FullMethodName)},
	}
	var b strings.Builder
	b.WriteString("| may | ")
	for i, p := range personas {
		if i > 0 {
			b.WriteString(" | ")
		}
		b.WriteString(p.name)
	}
	b.WriteString(" |\n|---|")
	b.WriteString(strings.Repeat("---|", len(personas)))
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + r.action + " | ")
		for i, p := range personas {
			if i > 0 {
				b.WriteString(" | ")
			}
			b.WriteString(r.cell(p.caller))
		}
		b.WriteString(" |\n")
	}
	return b.String()
}

const (
	tableStart = "<!-- authorization table: generated by `go test ./cmd/sluice -run TestReadmeAuthorizationTable -update-readme` -->\n"
	tableEnd   = "<!-- end of authorization table -->"
)

// The README's table of who may do what is the rules' own answer.
func TestReadmeAuthorizationTable(t *testing.T) {
	const path = "../../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, tableStart), strings.Index(readme, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md has no authorization table between %q and %q", strings.TrimSpace(tableStart), tableEnd)
	}
	want := authorizationTable()
	got := readme[i+len(tableStart) : j]
	if got == want {
		return
	}
	if *updateReadme {
		if err := os.WriteFile(path, []byte(readme[:i+len(tableStart)]+want+readme[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README.md's authorization table differs from the rules; run with -update-readme.\nwant:\n%s\ngot:\n%s", want, got)
}

// Every method of every service `sluice serve` registers has a rule, so
// none is open (or shut) by omission.
func TestServeEveryMethodHasARule(t *testing.T) {
	r := startServe(t)
	n := 0
	for name, srv := range r.servers {
		for svc, info := range srv.GRPC().GetServiceInfo() {
			for _, m := range info.Methods {
				full := "/" + svc + "/" + m.Name
				n++
				if !srv.HasRule(full) {
					t.Errorf("%s: %s has no authorization rule", name, full)
				}
			}
		}
	}
	// The rule tables name only methods that exist.
	for _, rules := range []auth.Rules{credential.Rules, destination.Rules, delivery.Rules, delivery.FlightRules} {
		for m := range rules {
			found := false
			for _, srv := range r.servers {
				svc, meth, _ := strings.Cut(strings.TrimPrefix(m, "/"), "/")
				for _, mi := range srv.GRPC().GetServiceInfo()[svc].Methods {
					found = found || mi.Name == meth
				}
			}
			if !found {
				t.Errorf("rule for %s, which no server registers", m)
			}
		}
	}
	if n < 25 {
		t.Fatalf("only %d methods registered", n)
	}
}

// Issue 9, item 1, end to end: tokens of each policy against every
// credential RPC on a live `sluice serve`.
func TestServeCredentialRulesByPolicy(t *testing.T) {
	r := startServe(t)
	ctx := context.Background()
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	access := credentialv1.NewCredentialAccessServiceClient(r.conns["credential"])
	dests := destinationv1.NewDestinationServiceClient(r.conns["destination"])
	const env = "tenants/acme/environments/sandbox"
	admin := r.token("acme", auth.PolicyAdministrator)
	keys := func() *credentialv1.Credential {
		return &credentialv1.Credential{Bucket: "acme-exports", Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}
	}
	// One credential per kind of destination on it, and one with none.
	for id, a := range map[string]*destinationv1.Access{"open": nil, "admin": {AdminOnly: true}, "limited": {AllowLimitedPii: true}, "bare": nil} {
		c, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: env, CredentialId: "c-" + id, Credential: keys()}, admin)
		if err != nil {
			t.Fatal(err)
		}
		if id == "bare" {
			continue
		}
		if _, err := dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: env, DestinationId: "d-" + id, Destination: &destinationv1.Destination{
			Credential: c.GetName(), Access: a, Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}}}, admin); err != nil {
			t.Fatal(err)
		}
	}
	name := func(id string) string { return env + "/credentials/c-" + id }
	for _, tc := range []struct {
		persona  string
		policies []string
		change   codes.Code
		readable string // credentials Get and List answer
	}{
		{"administrator", []string{auth.PolicyAdministrator}, codes.OK, "c-admin c-bare c-limited c-open"},
		{"operator", []string{auth.PolicyOperator}, codes.OK, "c-admin c-bare c-limited c-open"},
		{"no policy", nil, codes.PermissionDenied, "c-limited c-open"},
		{"restrict PII", []string{auth.PolicyRestrictPII}, codes.PermissionDenied, "c-limited"},
	} {
		t.Run(tc.persona, func(t *testing.T) {
			as := r.token("acme", tc.policies...)
			// The reproduction: point an admin only destination's
			// credential at another bucket.
			cur, err := creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: name("admin")}, admin)
			if err != nil {
				t.Fatal(err)
			}
			_, err = creds.UpdateCredential(ctx, &credentialv1.UpdateCredentialRequest{
				Credential: &credentialv1.Credential{Name: name("admin"), Bucket: "mallory-bucket"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"bucket"}}, Etag: cur.GetEtag()}, as)
			if status.Code(err) != tc.change {
				t.Errorf("UpdateCredential: %v, want %v", err, tc.change)
			}
			if tc.change == codes.OK { // put it back
				back, _ := creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: name("admin")}, admin)
				if _, err := creds.UpdateCredential(ctx, &credentialv1.UpdateCredentialRequest{
					Credential: &credentialv1.Credential{Name: name("admin"), Bucket: "acme-exports"},
					UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"bucket"}}, Etag: back.GetEtag()}, admin); err != nil {
					t.Fatal(err)
				}
			}
			id := "new-" + strings.ReplaceAll(tc.persona, " ", "-")
			if _, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: env, CredentialId: id, Credential: keys()}, as); status.Code(err) != tc.change {
				t.Errorf("CreateCredential: %v, want %v", err, tc.change)
			}
			if _, err := creds.RegenerateExternalId(ctx, &credentialv1.RegenerateExternalIdRequest{Name: name("open")}, as); tc.change != codes.OK && status.Code(err) != tc.change {
				t.Errorf("RegenerateExternalId: %v, want %v", err, tc.change)
			}
			if tc.change == codes.OK {
				if _, err := creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: env + "/credentials/" + id}, as); err != nil {
					t.Errorf("DeleteCredential: %v", err)
				}
			} else if _, err := creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: name("bare")}, as); status.Code(err) != tc.change {
				t.Errorf("DeleteCredential: %v, want %v", err, tc.change)
			}

			var got []string
			for _, id := range []string{"admin", "bare", "limited", "open"} {
				_, err := creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: name(id)}, as)
				switch status.Code(err) {
				case codes.OK:
					got = append(got, "c-"+id)
				case codes.NotFound:
					if _, err := creds.TestCredential(ctx, &credentialv1.TestCredentialRequest{Name: name(id)}, as); status.Code(err) != codes.NotFound {
						t.Errorf("TestCredential of unreadable %s: %v, want NotFound", id, err)
					}
				default:
					t.Errorf("GetCredential(%s): %v", id, err)
				}
			}
			if strings.Join(got, " ") != tc.readable {
				t.Errorf("GetCredential answers %v, want %s", got, tc.readable)
			}
			list, err := creds.ListCredentials(ctx, &credentialv1.ListCredentialsRequest{Parent: env}, as)
			if err != nil {
				t.Fatal(err)
			}
			got = nil
			for _, c := range list.GetCredentials() {
				got = append(got, c.GetName()[strings.LastIndexByte(c.GetName(), '/')+1:])
			}
			if strings.Join(got, " ") != tc.readable {
				t.Errorf("ListCredentials answers %v, want %s", got, tc.readable)
			}
			if _, err := access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: name("open")}, as); status.Code(err) != codes.PermissionDenied {
				t.Errorf("MintAccess with a user token: %v, want PermissionDenied", err)
			}
		})
	}
}

// Issue 9, item 2, end to end: a token signed by the users' key that
// claims the service policy and no tenant used to read every tenant's
// secrets through MintAccess.
func TestServeUserKeyCannotMakeAService(t *testing.T) {
	r := startServe(t)
	ctx := context.Background()
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	c, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: "tenants/globex/environments/production", CredentialId: "keys",
		Credential: &credentialv1.Credential{Bucket: "globex-exports", Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}}, r.token("globex", auth.PolicyAdministrator))
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(r.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, claims := range map[string]jwt.MapClaims{
		"user issuer":    {"sub": "mallory", "iss": auth.Issuer, "aud": auth.Audience, "policies": []string{auth.PolicyService}, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()},
		"service issuer": {"sub": "mallory", "iss": auth.ServiceIssuer, "aud": auth.ServiceAudience, "policies": []string{auth.PolicyService}, "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()},
	} {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		tok.Header["kid"] = auth.KeyID(key.Public().(ed25519.PublicKey))
		signed, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		as := grpc.PerRPCCredentials(auth.BearerCredentials(signed))
		if _, err := credentialv1.NewCredentialAccessServiceClient(r.conns["credential"]).MintAccess(ctx, &credentialv1.MintAccessRequest{Name: c.GetName()}, as); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: MintAccess answered %v, want Unauthenticated", name, err)
		}
		if _, err := creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: c.GetName()}, as); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: GetCredential answered %v, want Unauthenticated", name, err)
		}
	}
}
