package credential

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/pagination"
)

// Rules says who may call each method. Changing a credential in any way
// needs an administrator or operator, because every destination on it,
// admin only ones included, writes where it points. Reading and testing
// take any caller and then MayRead decides per credential; MintAccess is
// for Sluice services only.
var Rules = auth.Rules{
	credentialv1.CredentialService_CreateCredential_FullMethodName:     auth.Admin,
	credentialv1.CredentialService_UpdateCredential_FullMethodName:     auth.Admin,
	credentialv1.CredentialService_DeleteCredential_FullMethodName:     auth.Admin,
	credentialv1.CredentialService_RegenerateExternalId_FullMethodName: auth.Admin,
	credentialv1.CredentialService_GetCredential_FullMethodName:        auth.AnyCaller,
	credentialv1.CredentialService_ListCredentials_FullMethodName:      auth.AnyCaller,
	credentialv1.CredentialService_TestCredential_FullMethodName:       auth.AnyCaller,
	credentialv1.CredentialAccessService_MintAccess_FullMethodName:     auth.ServiceOnly,
}

// MayRead is the one rule for who may see (get, list, test) a credential:
// Datagrid Administrators and Operators see every credential of their
// tenant; anyone else sees a credential only while they may use at least
// one destination on it (usesUsable). A Sluice service acting for itself
// sees every credential.
func MayRead(c *auth.Caller, usesUsable bool) bool {
	return c.ForItself() || c.IsAdmin() || usesUsable
}

// maxDestinationPages bounds how far the service pages through a tenant's
// destinations when it answers who may see a credential.
const maxDestinationPages = 20

// destinationsOn answers the names of the destinations in parent that use
// credential (all of them when credential is empty, keyed by credential),
// as the caller sees them, or as this service sees them when asService.
func (s *Service) destinationsOn(ctx context.Context, parent, credential string, asService bool) (map[string][]string, error) {
	if asService {
		ctx = auth.AsService(ctx)
	}
	req := &destinationv1.ListDestinationsRequest{Parent: parent, PageSize: pagination.MaxPageSize}
	if credential != "" {
		req.Filter = fmt.Sprintf("credential = %q", credential)
	}
	out := map[string][]string{}
	for range maxDestinationPages {
		resp, err := s.peers.Destinations.ListDestinations(ctx, req)
		if err != nil {
			return nil, apierror.Wrap(err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
				"cannot tell which destinations use the credential: the destination service did not answer; try again")
		}
		for _, d := range resp.GetDestinations() {
			out[d.GetCredential()] = append(out[d.GetCredential()], d.GetName())
		}
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return out, nil
}

// readable answers NotFound, as for a credential that does not exist, when
// the caller may not read c.
func (s *Service) readable(ctx context.Context, c *credentialv1.Credential) error {
	caller, err := auth.Require(ctx)
	if err != nil {
		return err
	}
	if MayRead(caller, false) {
		return nil
	}
	n, err := parseName(c.GetName())
	if err != nil {
		return err
	}
	using, err := s.destinationsOn(ctx, n.Parent.String(), c.GetName(), false)
	if err != nil {
		return err
	}
	if !MayRead(caller, len(using[c.GetName()]) > 0) {
		return apierror.NotFound(c.GetName())
	}
	return nil
}

// readableSet answers the credentials of parent the caller may read, or nil
// when the caller may read them all.
func (s *Service) readableSet(ctx context.Context, parent string) (map[string]bool, error) {
	caller, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	if MayRead(caller, false) {
		return nil, nil
	}
	using, err := s.destinationsOn(ctx, parent, "", false)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for cred, dests := range using {
		set[cred] = MayRead(caller, len(dests) > 0)
	}
	return set, nil
}
