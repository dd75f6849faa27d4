// Package destination is the destination service: where and how delivered
// files land, connection tests, previews, and promotion from a sandbox to
// production.
package destination

import (
	"context"
	"regexp"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/emptypb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/services/destination/store"
)

const collection = "destinations"

const later = "destination storage, tests, previews and promotion arrive with the destination service work (issue 6)"

// Config configures the destination service.
type Config struct {
	// DatabaseDSN is a SQLite path (`sqlite:...`) or a PostgreSQL URL.
	DatabaseDSN string
}

// Peers are the services the destination service calls over gRPC.
type Peers struct {
	Credentials credentialv1.CredentialServiceClient
	Access      credentialv1.CredentialAccessServiceClient
}

// Service implements DestinationService.
type Service struct {
	destinationv1.UnimplementedDestinationServiceServer

	store *store.Store
	peers Peers
}

// New opens the store and answers the service.
func New(ctx context.Context, cfg Config, peers Peers) (*Service, error) {
	st, err := store.Open(ctx, cfg.DatabaseDSN)
	if err != nil {
		return nil, err
	}
	return &Service{store: st, peers: peers}, nil
}

// Register adds the service to srv and closes the store on shutdown.
func (s *Service) Register(srv *grpcserver.Server) {
	srv.RegisterService(&destinationv1.DestinationService_ServiceDesc, s)
	srv.OnShutdown(s)
}

// Close closes the store.
func (s *Service) Close() error { return s.store.Close() }

var (
	accountID = regexp.MustCompile(`^[0-9]{12}$`)
	// minSplitBytes is S3's smallest multipart part; smaller files would
	// defeat streaming.
	minSplitBytes int64 = 5 << 20
)

// validateDestination checks the settings a caller sets. parent is the
// tenant environment the destination lives in.
func validateDestination(v *apierror.Violations, d *destinationv1.Destination, parent resourcename.Parent, create bool) {
	validate.MaxLen(v, "destination.display_name", d.GetDisplayName(), 200)
	validate.MaxLen(v, "destination.description", d.GetDescription(), 2000)
	validate.MaxLen(v, "destination.prefix", d.GetPrefix(), 900)
	validate.MaxLen(v, "destination.filename_template", d.GetFilenameTemplate(), 1024)
	if create || d.GetCredential() != "" {
		if c, ok := validate.Name(v, "destination.credential", d.GetCredential(), "credentials"); ok && parent != (resourcename.Parent{}) && c.Parent != parent {
			v.Add("destination.credential", "must be a credential of %s", parent)
		}
	}
	if create || d.GetFormat() != nil {
		validateFormat(v, d.GetFormat())
	}
	if s := d.GetSplit(); s != nil {
		if s.GetMaxRows() < 0 {
			v.Add("destination.split.max_rows", "must not be negative")
		}
		if s.GetMaxBytes() < 0 || (s.GetMaxBytes() > 0 && s.GetMaxBytes() < minSplitBytes) {
			v.Add("destination.split.max_bytes", "must be 0 (no limit) or at least %d bytes (5 MiB)", minSplitBytes)
		}
	}
	if rn := d.GetRowNumber(); rn != nil {
		validate.MaxLen(v, "destination.row_number.column_name", rn.GetColumnName(), 128)
	}
	if e := d.GetEncryption(); e != nil {
		kms := e.GetKind() == destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS
		if kms && e.GetKmsKeyId() == "" {
			v.Add("destination.encryption.kms_key_id", "is required for SSE_KMS")
		}
		if !kms && e.GetKmsKeyId() != "" {
			v.Add("destination.encryption.kms_key_id", "is only used with SSE_KMS")
		}
	}
	if len(d.GetTags()) > 10 {
		v.Add("destination.tags", "S3 allows at most 10 tags per object; got %d", len(d.GetTags()))
	}
	for k, val := range d.GetTags() {
		if k == "" || utf8.RuneCountInString(k) > 128 || utf8.RuneCountInString(val) > 256 {
			v.Add("destination.tags", "tag keys must be 1 to 128 characters and values at most 256; %q breaks that", k)
		}
	}
	if o := d.GetExpectedBucketOwner(); o != "" && !accountID.MatchString(o) {
		v.Add("destination.expected_bucket_owner", "must be a 12-digit AWS account id")
	}
}

func validateFormat(v *apierror.Violations, f *destinationv1.FileFormat) {
	switch k := f.GetKind().(type) {
	case *destinationv1.FileFormat_Parquet:
		if k.Parquet.GetRowGroupRows() < 0 {
			v.Add("destination.format.parquet.row_group_rows", "must not be negative")
		}
	case *destinationv1.FileFormat_Delimited:
		d := k.Delimited
		if n := utf8.RuneCountInString(d.GetDelimiter()); n > 1 {
			v.Add("destination.format.delimited.delimiter", "must be a single character")
		}
		switch d.GetDelimiter() {
		case `"`, "\r", "\n":
			v.Add("destination.format.delimited.delimiter", "must not be a quote, CR or LF")
		}
		if utf8.RuneCountInString(d.GetEscape()) > 1 {
			v.Add("destination.format.delimited.escape", "must be a single character or empty")
		}
	case *destinationv1.FileFormat_Json, *destinationv1.FileFormat_Ndjson:
	default:
		v.Add("destination.format", "is required: set parquet, delimited, json or ndjson")
	}
}

func named(ctx context.Context, name string) error {
	_, err := validate.Resource(ctx, "name", name, collection)
	return err
}

// CreateDestination validates the request; storing arrives with issue 6.
func (s *Service) CreateDestination(ctx context.Context, req *destinationv1.CreateDestinationRequest) (*destinationv1.Destination, error) {
	var v apierror.Violations
	parent, ok := validate.Parent(&v, "parent", req.GetParent())
	validate.ID(&v, "destination_id", req.GetDestinationId())
	if d := req.GetDestination(); validate.Present(&v, "destination", d != nil) {
		validateDestination(&v, d, parent, true)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if ok {
		if err := validate.Visible(ctx, parent.Tenant, req.GetParent()); err != nil {
			return nil, err
		}
	}
	return nil, apierror.Unimplemented("CreateDestination", later)
}

// GetDestination validates the request; reading arrives with issue 6.
func (s *Service) GetDestination(ctx context.Context, req *destinationv1.GetDestinationRequest) (*destinationv1.Destination, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("GetDestination", later)
}

// ListDestinations validates the request; listing arrives with issue 6.
func (s *Service) ListDestinations(ctx context.Context, req *destinationv1.ListDestinationsRequest) (*destinationv1.ListDestinationsResponse, error) {
	if _, _, err := validate.Listing(ctx, req.GetParent(), req.GetPageSize(), req.GetPageToken(), req.GetFilter()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("ListDestinations", later)
}

// UpdateDestination validates the request; updating arrives with issue 6.
func (s *Service) UpdateDestination(ctx context.Context, req *destinationv1.UpdateDestinationRequest) (*destinationv1.Destination, error) {
	var v apierror.Violations
	var n resourcename.Name
	if d := req.GetDestination(); validate.Present(&v, "destination", d != nil) {
		n, _ = validate.Name(&v, "destination.name", d.GetName(), collection)
		validateDestination(&v, d, n.Parent, false)
	}
	validate.UpdateMask(&v, req.GetUpdateMask())
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := validate.Visible(ctx, n.Tenant, req.GetDestination().GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("UpdateDestination", later)
}

// DeleteDestination validates the request; deleting arrives with issue 6.
func (s *Service) DeleteDestination(ctx context.Context, req *destinationv1.DeleteDestinationRequest) (*emptypb.Empty, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("DeleteDestination", later)
}

// TestDestination validates the request; testing arrives with issue 6.
func (s *Service) TestDestination(ctx context.Context, req *destinationv1.TestDestinationRequest) (*credentialv1.TestResult, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("TestDestination", later)
}

// PreviewDestination validates the request; previews arrive with issue 6.
func (s *Service) PreviewDestination(ctx context.Context, req *destinationv1.PreviewDestinationRequest) (*destinationv1.PreviewDestinationResponse, error) {
	var v apierror.Violations
	var tenant, name string
	switch t := req.GetTarget().(type) {
	case *destinationv1.PreviewDestinationRequest_Name:
		n, _ := validate.Name(&v, "name", t.Name, collection)
		tenant, name = n.Tenant, t.Name
	case *destinationv1.PreviewDestinationRequest_Destination:
		validateDestination(&v, t.Destination, resourcename.Parent{}, true)
	default:
		v.Add("target", "is required: set name or destination")
	}
	if fc := req.GetFileCount(); fc < 0 || fc > 100 {
		v.Add("file_count", "must be between 0 and 100")
	}
	validate.MaxLen(&v, "output_name", req.GetOutputName(), 200)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if name != "" {
		if err := validate.Visible(ctx, tenant, name); err != nil {
			return nil, err
		}
	}
	return nil, apierror.Unimplemented("PreviewDestination", later)
}

// PromoteDestination validates the request; promotion arrives with issue 6.
func (s *Service) PromoteDestination(ctx context.Context, req *destinationv1.PromoteDestinationRequest) (*destinationv1.Destination, error) {
	var v apierror.Violations
	n, ok := validate.Name(&v, "name", req.GetName(), collection)
	if validate.ID(&v, "target_environment", req.GetTargetEnvironment()) && ok && req.GetTargetEnvironment() == n.Environment {
		v.Add("target_environment", "must differ from the destination's own environment %q", n.Environment)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := validate.Visible(ctx, n.Tenant, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("PromoteDestination", later)
}

// ResolveDestination is internal: only the service policy may call it.
func (s *Service) ResolveDestination(ctx context.Context, req *destinationv1.ResolveDestinationRequest) (*destinationv1.Destination, error) {
	if _, err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return nil, apierror.Unimplemented("ResolveDestination", later)
}
