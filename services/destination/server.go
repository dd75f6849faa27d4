// Package destination is the destination service: where and how delivered
// files land, connection tests, previews, and promotion from a sandbox to
// production.
package destination

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/emptypb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/awsname"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/outputspec"
	"github.com/sluicehq/sluice/pkg/pagination"
	"github.com/sluicehq/sluice/pkg/partition"
	"github.com/sluicehq/sluice/pkg/pgpstream"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/services/destination/store"
)

const collection = "destinations"

// Config configures the destination service.
type Config struct {
	// DatabaseDSN is a SQLite path (`sqlite:...`) or a PostgreSQL URL.
	DatabaseDSN string
	// AWS says where S3 is (MinIO locally).
	AWS awsclient.Endpoints
}

// Peers are the services the destination service calls over gRPC.
type Peers struct {
	Credentials credentialv1.CredentialServiceClient
	Access      credentialv1.CredentialAccessServiceClient
}

// Service implements DestinationService.
type Service struct {
	destinationv1.UnimplementedDestinationServiceServer

	cfg   Config
	store *store.Store
	peers Peers
	now   func() time.Time
}

// New opens the store and answers the service.
func New(ctx context.Context, cfg Config, peers Peers) (*Service, error) {
	if err := cfg.AWS.Check(); err != nil {
		return nil, fmt.Errorf("destination service: %w", err)
	}
	st, err := store.Open(ctx, cfg.DatabaseDSN)
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, store: st, peers: peers, now: time.Now}, nil
}

// Rules says who may call each method. Every public method takes any caller
// of the tenant and then applies the destination access rule (MayUse) to
// each destination; ResolveDestination is the delivery service's question.
var Rules = auth.Rules{
	destinationv1.DestinationService_CreateDestination_FullMethodName:  auth.AnyCaller,
	destinationv1.DestinationService_GetDestination_FullMethodName:     auth.AnyCaller,
	destinationv1.DestinationService_ListDestinations_FullMethodName:   auth.AnyCaller,
	destinationv1.DestinationService_UpdateDestination_FullMethodName:  auth.AnyCaller,
	destinationv1.DestinationService_DeleteDestination_FullMethodName:  auth.AnyCaller,
	destinationv1.DestinationService_TestDestination_FullMethodName:    auth.AnyCaller,
	destinationv1.DestinationService_PreviewDestination_FullMethodName: auth.AnyCaller,
	destinationv1.DestinationService_PromoteDestination_FullMethodName: auth.AnyCaller,
	destinationv1.DestinationService_ResolveDestination_FullMethodName: auth.ServiceOnly,
	destinationv1.DestinationService_RecordDelivery_FullMethodName:     auth.ServiceOnly,
}

// Register adds the service to srv and closes the store on shutdown.
func (s *Service) Register(srv *grpcserver.Server) {
	srv.RegisterService(&destinationv1.DestinationService_ServiceDesc, s, Rules)
	srv.OnShutdown(s)
}

// Close closes the store.
func (s *Service) Close() error { return s.store.Close() }

var (
	accountID = regexp.MustCompile(`^[0-9]{12}$`)
	// s3TagText is what S3 allows in object tag keys and values.
	s3TagText = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
	// sampleTime renders templates when settings are checked.
	sampleTime = time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)
	// minSplitBytes is the smallest file a split by size makes: 1 MB, as
	// the export tools users compare us with allow (Amperity: 1 to 2000
	// MB). A file under one part goes up in a single PutObject.
	minSplitBytes int64 = 1_000_000
)

// validateDestination checks the settings a caller sets. parent is the
// tenant environment the destination lives in.
func validateDestination(v *apierror.Violations, d *destinationv1.Destination, parent resourcename.Parent, create bool) {
	validate.DisplayName(v, "destination.display_name", d.GetDisplayName())
	validate.Description(v, "destination.description", d.GetDescription())
	if err := awsname.CheckKeyPrefix(d.GetPrefix()); err != nil {
		v.Add("destination.prefix", "%v", err)
	}
	if b := d.GetBucketOverride(); b != "" {
		if _, err := awsname.ParseBucket(b); err != nil {
			v.Add("destination.bucket_override", "%v", err)
		}
	}
	if t := d.GetFilenameTemplate(); t != "" {
		tmpl, err := filename.Parse(t)
		switch {
		case err != nil:
			v.Add("destination.filename_template", "%v", err)
		case splits(d) && !tmpl.UsesFileNumber():
			v.Add("destination.filename_template", "a split output needs {{file_number}} in the template so that its files get distinct names")
		case d.GetPartitionBy() != nil && !tmpl.UsesFileNumber():
			v.Add("destination.filename_template", "a partitioned output needs {{file_number}} in the template: a partition may get several files")
		}
	}
	if create || d.GetCredential() != "" {
		if c, ok := validate.Name(v, "destination.credential", d.GetCredential(), "credentials"); ok && parent != (resourcename.Parent{}) && c.Parent != parent {
			v.Add("destination.credential", "must be a credential of %s", parent)
		}
	}
	if create || d.GetFormat() != nil {
		validateFormat(v, d.GetFormat())
	}
	if pb := d.GetPartitionBy(); pb != nil {
		validatePartitioning(v, pb)
	}
	if k := d.GetPgpPublicKey(); k != "" {
		if _, err := pgpstream.ParseRecipient(k); err != nil {
			v.Add("destination.pgp_public_key", "%v", err)
		}
	}
	if v.Len() == 0 {
		if c, err := outputspec.Config(d, filename.Values{Now: sampleTime, OutputName: "output"}); err == nil {
			if n := outputspec.WorstCaseKeyBytes(c); n > outputspec.MaxKeyBytes {
				v.Add("destination.filename_template", "with the prefix, object keys can reach %d bytes (longest month and weekday names, a 200-character output name, file 99999); S3 allows %d", n, outputspec.MaxKeyBytes)
			} else if err := outputspec.CheckKeys(c, 2); err != nil {
				v.Add("destination.filename_template", "%v", err)
			}
		}
	}
	if s := d.GetSplit(); s != nil {
		if s.GetMaxRows() < 0 {
			v.Add("destination.split.max_rows", "must not be negative")
		}
		if s.GetMaxBytes() < 0 || (s.GetMaxBytes() > 0 && s.GetMaxBytes() < minSplitBytes) {
			v.Add("destination.split.max_bytes", "must be 0 (no limit) or at least %d bytes (1 MB)", minSplitBytes)
		}
	}
	if rn := d.GetRowNumber(); rn != nil {
		validate.Text(v, "destination.row_number.column_name", rn.GetColumnName(), 128, false)
	}
	if e := d.GetEncryption(); e != nil {
		kms := e.GetKind() == destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS
		if kms && e.GetKmsKeyId() == "" {
			v.Add("destination.encryption.kms_key_id", "is required for SSE_KMS")
		} else if kms {
			if err := awsname.CheckKMSKeyID(e.GetKmsKeyId()); err != nil {
				v.Add("destination.encryption.kms_key_id", "%v", err)
			}
		}
		if !kms && e.GetKmsKeyId() != "" {
			v.Add("destination.encryption.kms_key_id", "is only used with SSE_KMS")
		}
	}
	if len(d.GetTags()) > 10 {
		v.Add("destination.tags", "S3 allows at most 10 tags per object; got %d", len(d.GetTags()))
	}
	for k, val := range d.GetTags() {
		if k == "" || utf8.RuneCountInString(k) > 128 || utf8.RuneCountInString(val) > 256 || !s3TagText.MatchString(k) || !s3TagText.MatchString(val) {
			v.Add(fmt.Sprintf("destination.tags[%q]", clip(k)), "tag keys must be 1 to 128 and values at most 256 letters, digits, spaces and + - = . _ : / @")
		}
	}
	if o := d.GetExpectedBucketOwner(); o != "" && !accountID.MatchString(o) {
		v.Add("destination.expected_bucket_owner", "must be a 12-digit AWS account id")
	}
}

// folderName is what a partition folder's name may be.
var folderName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// validatePartitioning checks what can be checked without the data: the
// columns themselves are checked when a delivery's schema arrives.
func validatePartitioning(v *apierror.Violations, pb *destinationv1.Partitioning) {
	fields := pb.GetFields()
	switch {
	case len(fields) == 0:
		v.Add("destination.partition_by.fields", "name at least one column to partition by")
	case len(fields) > partition.MaxFields:
		v.Add("destination.partition_by.fields", "at most %d partition columns: each adds a level of folders, and more make folders of a file or two", partition.MaxFields)
	}
	folders := map[string]bool{}
	for i, f := range fields {
		at := fmt.Sprintf("destination.partition_by.fields[%d]", i)
		if f.GetColumn() == "" {
			v.Add(at+".column", "is required: a top-level column of the delivered data")
		} else {
			validate.Text(v, at+".column", f.GetColumn(), 255, false)
		}
		t := f.GetTransform()
		if _, ok := destinationv1.PartitionTransform_name[int32(t)]; !ok {
			v.Add(at+".transform", "must be IDENTITY, YEAR, MONTH, DAY, HOUR or BUCKET")
		}
		if t == destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET {
			if b := f.GetBuckets(); b < 2 || b > 100_000 {
				v.Add(at+".buckets", "must be 2 to 100000 for the BUCKET transform")
			}
		} else if f.GetBuckets() != 0 {
			v.Add(at+".buckets", "is only used with the BUCKET transform")
		}
		if n := f.GetName(); n != "" && !folderName.MatchString(n) {
			v.Add(at+".name", "must be 1 to 128 letters, digits and _ - .")
		}
		spec, err := outputspec.Partitioning(&destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{f}})
		if err == nil {
			folder := spec.Fields[0].FolderName()
			if folders[folder] {
				v.Add(at, "makes folders named %q like an earlier field: give it another name", folder)
			}
			folders[folder] = true
		}
	}
	if tz := pb.GetTimeZone(); tz != "" {
		if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
			v.Add("destination.partition_by.time_zone", "must be an IANA time zone such as Europe/Paris, or empty for UTC")
		}
	}
	if n := pb.GetMaxOpenFiles(); n < 0 || n > 1024 {
		v.Add("destination.partition_by.max_open_files", "must be 1 to 1024, or 0 to size it to the service's part-buffer pool")
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// splits reports whether the output may be cut into several files.
func splits(d *destinationv1.Destination) bool {
	return d.GetSplit().GetMaxRows() > 0 || d.GetSplit().GetMaxBytes() > 0
}

func validateFormat(v *apierror.Violations, f *destinationv1.FileFormat) {
	switch k := f.GetKind().(type) {
	case *destinationv1.FileFormat_Parquet:
		pq := k.Parquet
		if pq.GetRowGroupRows() < 0 {
			v.Add("destination.format.parquet.row_group_rows", "must not be negative")
		}
		if _, ok := destinationv1.ParquetCodec_name[int32(pq.GetCodec())]; !ok {
			v.Add("destination.format.parquet.codec", "must be one of SNAPPY, ZSTD, GZIP or NONE")
		}
		if _, ok := destinationv1.ParquetDataPageVersion_name[int32(pq.GetDataPageVersion())]; !ok {
			v.Add("destination.format.parquet.data_page_version", "must be 1 or 2")
		}
		if _, ok := destinationv1.ParquetDictionary_name[int32(pq.GetDictionary())]; !ok {
			v.Add("destination.format.parquet.dictionary", "must be one of AUTO, ALWAYS or NEVER")
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
		if d.GetQuoteMode() == destinationv1.QuoteMode_QUOTE_MODE_NONE && d.GetNullValue() == "" {
			// Nothing is quoted, so an empty string and a NULL would both
			// be written as nothing and read back alike.
			v.Add("destination.format.delimited.null_value", `quote mode none cannot tell an empty string from NULL when the null text is empty: set a null text such as \N, or choose another quote mode`)
		}
		if d.GetQuoteMode() == destinationv1.QuoteMode_QUOTE_MODE_ALL && d.GetNullValue() == "" {
			// Every field is quoted, NULL too: an empty string and a NULL
			// would both be written "" (#22).
			v.Add("destination.format.delimited.null_value", `quote mode all writes NULL quoted like any value, so with an empty null text NULL and an empty string are both "": set a null text such as \N, or choose quote mode all non-NULL fields, which leaves NULL bare`)
		}
		validate.Text(v, "destination.format.delimited.null_value", d.GetNullValue(), 32, false)
	case *destinationv1.FileFormat_Json, *destinationv1.FileFormat_Ndjson:
	default:
		v.Add("destination.format", "is required: set parquet, delimited, json or ndjson")
	}
}

func named(ctx context.Context, name string) error {
	n, err := validate.Resource("name", name, collection)
	if err != nil {
		return err
	}
	return auth.Visible(ctx, n.Tenant, name)
}

// visible reads a destination the caller may use: one they may not use is
// NotFound, exactly as one that does not exist.
func (s *Service) visible(ctx context.Context, name string) (*destinationv1.Destination, *auth.Caller, error) {
	if err := named(ctx, name); err != nil {
		return nil, nil, err
	}
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, nil, err
	}
	d, err := s.store.Destinations.Get(ctx, name)
	if errors.Is(err, apierror.ErrNotFound) {
		return nil, nil, apierror.NotFound(name)
	}
	if err != nil {
		// An outage is not "no such destination": callers retry the one
		// and give up on the other.
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if !MayUse(c, d) {
		return nil, nil, apierror.NotFound(name)
	}
	return d, c, nil
}

// checkCredential asks the credential service, as the caller, whether the
// credential exists and the caller may see it.
func (s *Service) checkCredential(ctx context.Context, name string) error {
	_, err := s.peers.Credentials.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: name})
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.NotFound, codes.PermissionDenied, codes.InvalidArgument:
		var v apierror.Violations
		v.Add("destination.credential", "%s does not exist or is not visible to you", name)
		return v.Err()
	case codes.Unavailable, codes.DeadlineExceeded:
		return apierror.Wrap(err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE,
			"the credential service did not answer; try again").With("credential", name)
	default:
		return fmt.Errorf("check credential %s: %w", name, err)
	}
}

// storedDestination clears what callers may not set.
func storedDestination(d *destinationv1.Destination) *destinationv1.Destination {
	d = proto.Clone(d).(*destinationv1.Destination)
	d.Etag, d.CreateTime, d.UpdateTime = "", nil, nil
	d.PromotedFrom, d.LastSuccessfulDeliveryTime = "", nil
	return d
}

var errCannotUse = apierror.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
	"you could not use a destination with these access settings: admin only needs the Datagrid Administrator or Operator policy, and callers under Restrict PII access need allow limited PII access")

// CreateDestination stores a destination after checking its credential
// through the credential service.
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
		if err := auth.Visible(ctx, parent.Tenant, req.GetParent()); err != nil {
			return nil, err
		}
	}
	caller, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	d := storedDestination(req.GetDestination())
	d.Name = parent.Child(collection, req.GetDestinationId()).String()
	if !MayUse(caller, d) {
		return nil, errCannotUse
	}
	if err := s.checkCredential(ctx, d.GetCredential()); err != nil {
		return nil, err
	}
	created, err := s.store.Destinations.Create(ctx, req.GetParent(), d)
	if errors.Is(err, apierror.ErrAlreadyExists) {
		return nil, apierror.Wrap(err, codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS, d.GetName()+" already exists").With("resource", d.GetName())
	}
	return created, err
}

// GetDestination answers a destination the caller may use.
func (s *Service) GetDestination(ctx context.Context, req *destinationv1.GetDestinationRequest) (*destinationv1.Destination, error) {
	d, _, err := s.visible(ctx, req.GetName())
	return d, err
}

var credentialFilter = regexp.MustCompile(`^\s*credential\s*=\s*"([^"]+)"\s*$`)

// ListDestinations answers a page of the destinations the caller may use,
// in name order; the filter `credential = "<name>"` narrows it.
func (s *Service) ListDestinations(ctx context.Context, req *destinationv1.ListDestinationsRequest) (*destinationv1.ListDestinationsResponse, error) {
	var where []resourcestore.Where
	if f := req.GetFilter(); f != "" {
		m := credentialFilter.FindStringSubmatch(f)
		if m == nil {
			var v apierror.Violations
			v.Add("filter", `must be empty or credential = "<credential name>"`)
			return nil, v.Err()
		}
		where = append(where, resourcestore.Where{Column: store.CredentialColumn, Value: m[1]})
	}
	p, size, after, err := validate.Listing(req.GetParent(), req.GetPageSize(), req.GetPageToken(), req.GetFilter())
	if err != nil {
		return nil, err
	}
	if err := auth.Visible(ctx, p.Tenant, req.GetParent()); err != nil {
		return nil, err
	}
	caller, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	items, next, err := s.store.Destinations.List(ctx, req.GetParent(), after, size, where...)
	if err != nil {
		return nil, err
	}
	resp := &destinationv1.ListDestinationsResponse{}
	for _, d := range items {
		if MayUse(caller, d) {
			resp.Destinations = append(resp.Destinations, d)
		}
	}
	if next != "" {
		resp.NextPageToken = pagination.Encode(next, pagination.Digest(req.GetParent(), req.GetFilter()))
	}
	return resp, nil
}

// updatable are the update_mask paths a caller may set: whole settings.
var updatable = []string{
	"display_name", "description", "credential", "bucket_override", "prefix", "format", "compression",
	"filename_template", "split", "row_number", "success_file", "manifest", "pgp_public_key",
	"encryption", "storage_class", "canned_acl", "tags", "expected_bucket_owner", "access", "partition_by",
}

// UpdateDestination replaces the settings named in update_mask.
func (s *Service) UpdateDestination(ctx context.Context, req *destinationv1.UpdateDestinationRequest) (*destinationv1.Destination, error) {
	var v apierror.Violations
	in := req.GetDestination()
	if validate.Present(&v, "destination", in != nil) {
		validate.Name(&v, "destination.name", in.GetName(), collection)
	}
	paths := validate.UpdateMask(&v, req.GetUpdateMask(), updatable)
	if slices.Contains(paths, "credential") {
		// Checked here, not left to the credential service: an empty or
		// malformed name is the caller's mistake, never "try again".
		validate.Name(&v, "destination.credential", in.GetCredential(), "credentials")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	current, caller, err := s.visible(ctx, in.GetName())
	if err != nil {
		return nil, err
	}
	if slices.Contains(paths, "credential") && in.GetCredential() != current.GetCredential() {
		if err := s.checkCredential(ctx, in.GetCredential()); err != nil {
			return nil, err
		}
	}
	n, _ := resourcename.Parse(in.GetName(), collection)
	return s.store.Destinations.Update(ctx, in.GetName(), req.GetEtag(), func(d *destinationv1.Destination) error {
		src, dst := in.ProtoReflect(), d.ProtoReflect()
		for _, p := range paths {
			fd := dst.Descriptor().Fields().ByName(protoreflect.Name(p))
			if src.Has(fd) {
				dst.Set(fd, src.Get(fd))
			} else {
				dst.Clear(fd)
			}
		}
		var mv apierror.Violations
		validateDestination(&mv, d, n.Parent, true)
		if err := mv.Err(); err != nil {
			return err
		}
		if !MayUse(caller, d) {
			return errCannotUse
		}
		return nil
	})
}

// DeleteDestination deletes a destination the caller may use.
func (s *Service) DeleteDestination(ctx context.Context, req *destinationv1.DeleteDestinationRequest) (*emptypb.Empty, error) {
	if _, _, err := s.visible(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if err := s.store.Destinations.Delete(ctx, req.GetName(), req.GetEtag()); err != nil {
		if errors.Is(err, apierror.ErrNotFound) {
			return nil, apierror.NotFound(req.GetName())
		}
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// TestDestination proves, with short-lived access from the credential
// service, that Sluice can write under the prefix with the destination's
// own settings, names any missing permission, and cleans up after itself.
func (s *Service) TestDestination(ctx context.Context, req *destinationv1.TestDestinationRequest) (*credentialv1.TestResult, error) {
	d, _, err := s.visible(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	access, err := s.peers.Access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: d.GetCredential()})
	if err != nil {
		// The credential's own failure (role not assumable, ...) is the
		// test's answer, in the same form as the other checks.
		e := apierror.FromStatus(err)
		if e.Code == codes.Unavailable || e.Code == codes.Internal || e.Reason == errorsv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			return nil, err
		}
		check := &credentialv1.TestCheck{Check: "get_access", Outcome: credentialv1.TestOutcome_TEST_OUTCOME_FAILED, Message: e.Message,
			Reason: apierror.ReasonName(e.Reason), MissingPermission: e.Metadata["missing_permission"]}
		return &credentialv1.TestResult{Checks: []*credentialv1.TestCheck{check}}, nil
	}
	return s.probe(ctx, d, access), nil
}

// PreviewDestination answers the object keys a delivery would write at the
// given time, from the same naming the delivery pipeline uses.
func (s *Service) PreviewDestination(ctx context.Context, req *destinationv1.PreviewDestinationRequest) (*destinationv1.PreviewDestinationResponse, error) {
	var v apierror.Violations
	var name string
	switch t := req.GetTarget().(type) {
	case *destinationv1.PreviewDestinationRequest_Name:
		validate.Name(&v, "name", t.Name, collection)
		name = t.Name
	case *destinationv1.PreviewDestinationRequest_Destination:
		validateDestination(&v, t.Destination, resourcename.Parent{}, true)
	default:
		v.Add("target", "is required: set name or destination")
	}
	if fc := req.GetFileCount(); fc < 0 || fc > 100 {
		v.Add("file_count", "must be between 0 and 100")
	}
	if on := req.GetOutputName(); on != "" {
		if err := outputspec.CheckOutputName(on); err != nil {
			v.Add("output_name", "%v", err)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	d := req.GetDestination()
	if name != "" {
		var err error
		if d, _, err = s.visible(ctx, name); err != nil {
			return nil, err
		}
	}
	at := s.now()
	if req.GetTime() != nil {
		at = req.GetTime().AsTime()
	}
	outputName := req.GetOutputName()
	if outputName == "" {
		outputName = "output"
	}
	cfg, err := outputspec.Config(d, filename.Values{Now: at, OutputName: outputName})
	if err != nil {
		var v apierror.Violations
		v.Add("destination", "%v", err)
		return nil, v.Err()
	}
	bucket := d.GetBucketOverride()
	if bucket == "" {
		c, err := s.peers.Credentials.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: d.GetCredential()})
		if err != nil {
			return nil, apierror.Wrap(err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION,
				"the destination's credential cannot be read, so its bucket is unknown: "+status.Convert(err).Message())
		}
		bucket = c.GetBucket()
	}
	files := 1
	if splits(d) {
		files = max(1, int(req.GetFileCount()))
	}
	if err := outputspec.CheckKeys(cfg, files); err != nil {
		var v apierror.Violations
		v.Add("output_name", "%v", err)
		return nil, v.Err()
	}
	resp := &destinationv1.PreviewDestinationResponse{Bucket: bucket}
	for n := 1; n <= files; n++ {
		key := cfg.Key(n)
		if cfg.Partition != nil {
			// Where a row's values would put the file, each column's
			// value shown as {column}, the time transforms' as of at.
			key = cfg.Prefix + outputspec.ExamplePartitionPath(cfg.Partition, at) + strings.TrimPrefix(key, cfg.Prefix)
		}
		resp.Objects = append(resp.Objects, &destinationv1.PreviewObject{Key: key, Kind: destinationv1.ObjectKind_OBJECT_KIND_DATA})
	}
	// In the order a delivery writes them: the manifest after the data,
	// the success file last, once everything else is complete.
	if d.GetManifest() {
		resp.Objects = append(resp.Objects, &destinationv1.PreviewObject{Key: fileset.ManifestKey(d.GetPrefix(), outputName), Kind: destinationv1.ObjectKind_OBJECT_KIND_MANIFEST})
	}
	if d.GetSuccessFile() {
		resp.Objects = append(resp.Objects, &destinationv1.PreviewObject{Key: fileset.SuccessKey(d.GetPrefix(), outputName), Kind: destinationv1.ObjectKind_OBJECT_KIND_SUCCESS})
	}
	return resp, nil
}

// PromoteDestination copies a verified destination into another
// environment under the same id, pointing at the credential of the same id
// there. A destination without a successful delivery is refused unless an
// administrator forces it; promoting again updates the copy, which force
// also needs when the copy was not promoted from this destination.
func (s *Service) PromoteDestination(ctx context.Context, req *destinationv1.PromoteDestinationRequest) (*destinationv1.Destination, error) {
	var v apierror.Violations
	n, ok := validate.Name(&v, "name", req.GetName(), collection)
	if validate.ID(&v, "target_environment", req.GetTargetEnvironment()) && ok && req.GetTargetEnvironment() == n.Environment {
		v.Add("target_environment", "must differ from the destination's own environment %q", n.Environment)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	src, caller, err := s.visible(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if req.GetForce() && !caller.IsAdmin() {
		return nil, apierror.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
			"force needs the Datagrid Administrator or Operator policy").With("policy", auth.PolicyAdministrator)
	}
	if src.GetLastSuccessfulDeliveryTime() == nil && !req.GetForce() {
		return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_NO_SUCCESSFUL_DELIVERY,
			"verify the destination with a successful test delivery in "+n.Environment+" before promoting it, or have an administrator force the promotion").
			With("destination", req.GetName())
	}
	target := resourcename.Parent{Tenant: n.Tenant, Environment: req.GetTargetEnvironment()}
	cred, _ := resourcename.Parse(src.GetCredential(), "credentials")
	targetCred := target.Child("credentials", cred.ID).String()
	if _, err := s.peers.Credentials.GetCredential(ctx, &credentialv1.GetCredentialRequest{Name: targetCred}); err != nil {
		if status.Code(err) == codes.NotFound {
			return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_MISSING_IN_TARGET,
				fmt.Sprintf("%s has no credential %q: create it there (with the production bucket and role) and promote again", target, cred.ID)).
				With("credential", targetCred)
		}
		return nil, apierror.Wrap(err, codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_UNAVAILABLE, "the credential service did not answer; try again")
	}
	copyTo := func(d *destinationv1.Destination) {
		keep := d.GetName()
		created, updated := d.GetCreateTime(), d.GetUpdateTime()
		proto.Reset(d)
		proto.Merge(d, storedDestination(src))
		d.Name, d.CreateTime, d.UpdateTime = keep, created, updated
		d.Credential, d.PromotedFrom = targetCred, req.GetName()
	}
	targetName := target.Child(collection, n.ID).String()
	fresh := &destinationv1.Destination{Name: targetName}
	copyTo(fresh)
	out, err := s.store.Destinations.Create(ctx, target.String(), fresh)
	if !errors.Is(err, apierror.ErrAlreadyExists) {
		return out, err
	}
	return s.store.Destinations.Update(ctx, targetName, "", func(d *destinationv1.Destination) error {
		if d.GetPromotedFrom() != req.GetName() && !req.GetForce() {
			return apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_DESTINATION_EXISTS_IN_TARGET,
				targetName+" exists and was not promoted from this destination; an administrator may force replacing it").With("destination", targetName)
		}
		copyTo(d)
		return nil
	})
}

// ResolveDestination is internal: a Sluice service asks, for the end caller
// whose token travels alongside, whether that caller may send data to the
// destination, before it accepts a byte.
func (s *Service) ResolveDestination(ctx context.Context, req *destinationv1.ResolveDestinationRequest) (*destinationv1.Destination, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	d, err := s.store.Destinations.Get(ctx, req.GetName())
	if errors.Is(err, apierror.ErrNotFound) {
		return nil, apierror.NotFound(req.GetName())
	}
	if err != nil {
		return nil, err
	}
	// The access decision, for an operator following a refused delivery.
	_, span := otel.Tracer("github.com/sluicehq/sluice/services/destination").Start(ctx, "resolve destination",
		trace.WithAttributes(attribute.String("sluice.destination", d.GetName()), attribute.Bool("sluice.allowed", MayUse(c, d)),
			attribute.Bool("sluice.admin_only", d.GetAccess().GetAdminOnly()), attribute.Bool("sluice.allow_limited_pii", d.GetAccess().GetAllowLimitedPii())))
	span.End()
	if !MayUse(c, d) {
		// Exactly as a destination that does not exist (#22): a refusal
		// never tells a caller what it may not see. The span above says
		// why, for an operator.
		return nil, apierror.NotFound(req.GetName())
	}
	return d, nil
}

// RecordDelivery is internal: the delivery service records that a delivery
// to the destination succeeded, so that promotion knows the setup works.
// The time only moves forward, however late a report arrives.
func (s *Service) RecordDelivery(ctx context.Context, req *destinationv1.RecordDeliveryRequest) (*destinationv1.Destination, error) {
	var v apierror.Violations
	validate.Name(&v, "delivery", req.GetDelivery(), "deliveries")
	if validate.Present(&v, "delivery_time", req.GetDeliveryTime() != nil) && !req.GetDeliveryTime().IsValid() {
		v.Add("delivery_time", "must be a valid time")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	d, err := s.store.Destinations.Update(ctx, req.GetName(), "", func(d *destinationv1.Destination) error {
		if last := d.GetLastSuccessfulDeliveryTime(); last == nil || last.AsTime().Before(req.GetDeliveryTime().AsTime()) {
			d.LastSuccessfulDeliveryTime = req.GetDeliveryTime()
		}
		return nil
	})
	if errors.Is(err, apierror.ErrNotFound) {
		return nil, apierror.NotFound(req.GetName())
	}
	return d, err
}
