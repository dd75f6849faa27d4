package main

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/testenv"
	"github.com/sluicehq/sluice/pkg/testidp"
)

// The services trust an operator's OpenID provider (--jwt-issuer), here a
// provider on zitadel's library started as its own process: a user who
// logs in through it (authorization code with PKCE) calls every service,
// through calls one service makes for them to another, with the tenant and
// policies its token carries; tokens signed before and after a key
// rotation (to another algorithm) both verify; a token of another provider,
// and one signed with the development key serve trusts without an issuer,
// are refused.
func TestServicesTrustAnIdentityProvider(t *testing.T) {
	opts := localserver.IdPOptions{
		Users:    []string{"ada@acme.test:pw:acme:" + auth.PolicyAdministrator, "rita@acme.test:pw:acme:" + auth.PolicyRestrictPII},
		ClientID: "console", ClientSecret: "s3cret", RedirectURIs: []string{"http://127.0.0.1/callback"}, Audience: "sluice",
	}
	idp, other := testenv.NewIdP(t, opts), testenv.NewIdP(t, opts)
	r := startServeWith(t, func(c *serveConfig) { c.Issuer.URL = idp.URL })
	ctx := context.Background()
	login := func(issuer, user string) grpc.CallOption {
		t.Helper()
		tok, err := testidp.Login(ctx, issuer, "console", "s3cret", "http://127.0.0.1/callback", user, "pw")
		if err != nil {
			t.Fatal(err)
		}
		return grpc.PerRPCCredentials(auth.BearerCredentials(tok))
	}
	creds := credentialv1.NewCredentialServiceClient(r.conns["credential"])
	dests := destinationv1.NewDestinationServiceClient(r.conns["destination"])
	ada := login(idp.URL, "ada@acme.test")
	c, err := creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: production, CredentialId: "keys",
		Credential: &credentialv1.Credential{Bucket: "acme-exports", Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}}}, ada)
	if err != nil {
		t.Fatalf("an administrator logged in through the provider: %v", err)
	}
	// The destination service asks the credential service, as Ada.
	if _, err := dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: "d", Destination: &destinationv1.Destination{
		Credential: c.GetName(), Format: csvFormat()}}, ada); err != nil {
		t.Fatalf("a call the destination service makes for her: %v", err)
	}
	// Rita's policies come from her token: she may not manage credentials.
	rita := login(idp.URL, "rita@acme.test")
	if _, err := creds.DeleteCredential(ctx, &credentialv1.DeleteCredentialRequest{Name: c.GetName()}, rita); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a restricted user deleting a credential: %v", err)
	}
	// A rotation to another algorithm: old and new tokens verify.
	if _, err := idp.Rotate("ES256"); err != nil {
		t.Fatal(err)
	}
	for name, as := range map[string]grpc.CallOption{"before the rotation": ada, "after it": login(idp.URL, "ada@acme.test")} {
		if _, err := creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: c.GetName()}, as); err != nil {
			t.Errorf("a token signed %s: %v", name, err)
		}
	}
	for name, as := range map[string]grpc.CallOption{"another provider's": login(other.URL, "ada@acme.test"), "the development key's": r.token("acme", auth.PolicyAdministrator)} {
		if _, err := creds.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: c.GetName()}, as); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s token: %v, want Unauthenticated", name, err)
		}
	}
}
