// Package credential is the credential service: it stores, rotates, tests
// and revokes access to customers' S3 buckets, and mints short-lived access
// for the other services.
package credential

import (
	"context"
	"io"

	"google.golang.org/protobuf/types/known/emptypb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/services/credential/store"
)

const collection = "credentials"

// later is what Unimplemented methods say about when they arrive.
const later = "credential storage, sealing and testing arrive with the credential service work (issue 4)"

// Config configures the credential service.
type Config struct {
	// DatabaseDSN is a SQLite path (`sqlite:...`) or a PostgreSQL URL.
	DatabaseDSN string
}

// Service implements CredentialService and CredentialAccessService.
type Service struct {
	credentialv1.UnimplementedCredentialServiceServer
	credentialv1.UnimplementedCredentialAccessServiceServer

	store *store.Store
}

// New opens the store and answers the service.
func New(ctx context.Context, cfg Config) (*Service, error) {
	st, err := store.Open(ctx, cfg.DatabaseDSN)
	if err != nil {
		return nil, err
	}
	return &Service{store: st}, nil
}

// Register adds both services to srv and closes the store on shutdown.
func (s *Service) Register(srv *grpcserver.Server) {
	srv.RegisterService(&credentialv1.CredentialService_ServiceDesc, s)
	srv.RegisterService(&credentialv1.CredentialAccessService_ServiceDesc, s)
	srv.OnShutdown(s)
}

// Close closes the store.
func (s *Service) Close() error { return s.store.Close() }

var _ io.Closer = (*Service)(nil)

// CreateCredential validates the request; storing arrives with issue 4.
func (s *Service) CreateCredential(ctx context.Context, req *credentialv1.CreateCredentialRequest) (*credentialv1.Credential, error) {
	var v apierror.Violations
	parent, ok := validate.Parent(&v, "parent", req.GetParent())
	validate.ID(&v, "credential_id", req.GetCredentialId())
	if c := req.GetCredential(); validate.Present(&v, "credential", c != nil) {
		validateCredential(&v, c, true)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if ok {
		if err := validate.Visible(ctx, parent.Tenant, req.GetParent()); err != nil {
			return nil, err
		}
	}
	return nil, apierror.Unimplemented("CreateCredential", later)
}

// validateCredential checks the fields a caller sets.
func validateCredential(v *apierror.Violations, c *credentialv1.Credential, create bool) {
	validate.MaxLen(v, "credential.display_name", c.GetDisplayName(), 200)
	validate.MaxLen(v, "credential.description", c.GetDescription(), 2000)
	if !create {
		return
	}
	validate.Required(v, "credential.bucket", c.GetBucket())
	switch t := c.GetType().(type) {
	case *credentialv1.Credential_RoleToRole:
		validate.Required(v, "credential.role_to_role.target_role_arn", t.RoleToRole.GetTargetRoleArn())
	case *credentialv1.Credential_AccessKey:
		validate.Required(v, "credential.access_key.access_key_id", t.AccessKey.GetAccessKeyId())
		validate.Required(v, "credential.access_key.secret_access_key", t.AccessKey.GetSecretAccessKey())
	default:
		v.Add("credential.type", "is required: set role_to_role or access_key")
	}
}

// named validates a request that names one credential and checks that the
// caller may see it.
func named(ctx context.Context, name string) error {
	_, err := validate.Resource(ctx, "name", name, collection)
	return err
}

// GetCredential validates the request; reading arrives with issue 4.
func (s *Service) GetCredential(ctx context.Context, req *credentialv1.GetCredentialRequest) (*credentialv1.Credential, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("GetCredential", later)
}

// ListCredentials validates the request; listing arrives with issue 4.
func (s *Service) ListCredentials(ctx context.Context, req *credentialv1.ListCredentialsRequest) (*credentialv1.ListCredentialsResponse, error) {
	if _, _, err := validate.Listing(ctx, req.GetParent(), req.GetPageSize(), req.GetPageToken(), ""); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("ListCredentials", later)
}

// UpdateCredential validates the request; updating arrives with issue 4.
func (s *Service) UpdateCredential(ctx context.Context, req *credentialv1.UpdateCredentialRequest) (*credentialv1.Credential, error) {
	var v apierror.Violations
	var tenant string
	if c := req.GetCredential(); validate.Present(&v, "credential", c != nil) {
		n, _ := validate.Name(&v, "credential.name", c.GetName(), collection)
		tenant = n.Tenant
		validateCredential(&v, c, false)
	}
	validate.UpdateMask(&v, req.GetUpdateMask())
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := validate.Visible(ctx, tenant, req.GetCredential().GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("UpdateCredential", later)
}

// DeleteCredential validates the request; deleting arrives with issue 4.
func (s *Service) DeleteCredential(ctx context.Context, req *credentialv1.DeleteCredentialRequest) (*emptypb.Empty, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if req.GetForce() {
		if _, err := auth.RequireAdmin(ctx); err != nil {
			return nil, err
		}
	}
	return nil, apierror.Unimplemented("DeleteCredential", later)
}

// TestCredential validates the request; testing arrives with issue 4.
func (s *Service) TestCredential(ctx context.Context, req *credentialv1.TestCredentialRequest) (*credentialv1.TestResult, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("TestCredential", later)
}

// RegenerateExternalId validates the request; it arrives with issue 4.
func (s *Service) RegenerateExternalId(ctx context.Context, req *credentialv1.RegenerateExternalIdRequest) (*credentialv1.Credential, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("RegenerateExternalId", later)
}

// MintAccess is internal: only the service policy may call it.
func (s *Service) MintAccess(ctx context.Context, req *credentialv1.MintAccessRequest) (*credentialv1.TemporaryAccess, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("MintAccess", later)
}
