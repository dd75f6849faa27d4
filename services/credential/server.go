// Package credential is the credential service: it stores, rotates, tests
// and revokes access to customers' S3 buckets, and mints short-lived access
// for the other services.
package credential

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/awsname"
	"github.com/sluicehq/sluice/pkg/awspolicy"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/pagination"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/secretseal"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/services/credential/store"
)

const collection = "credentials"

// Config configures the credential service.
type Config struct {
	// DatabaseDSN is a SQLite path (`sqlite:...`) or a PostgreSQL URL.
	DatabaseDSN string
	// PlatformRoleARN is the identity Sluice runs as, the principal of every
	// customer's trust policy.
	PlatformRoleARN string
	// MasterKeyFile holds the local master key that wraps secrets' data
	// keys; created 0600 on first start. Ignored when KMSKeyID is set.
	MasterKeyFile string
	// KMSKeyID wraps data keys with AWS KMS instead (id, ARN or alias).
	KMSKeyID string
	// AWS says where STS, S3 and KMS are.
	AWS awsclient.Endpoints
	// Sealer overrides MasterKeyFile and KMSKeyID (tests).
	Sealer *secretseal.Sealer
	// AccessCacheTTL bounds how long MintAccess hands out the same access:
	// a customer who changes the trust policy stops new deliveries within it.
	AccessCacheTTL time.Duration
	// AccessKeySessions says how an access key without a role becomes the
	// session credentials peers get: SessionToken (AWS STS GetSessionToken,
	// the default), AssumeRole (the STS of an S3-compatible store, such as
	// MinIO's, that serves AssumeRole for its users) or PassThrough (no STS:
	// the long-lived keys themselves, for stores without one; off unless
	// set, and logged at start).
	AccessKeySessions string
	// AccessKeySTSURL is the STS endpoint access keys are exchanged at;
	// AWS.STSURL when empty.
	AccessKeySTSURL string
	// Logger receives start-up warnings.
	Logger *slog.Logger
}

// Ways an access key becomes session credentials (Config.AccessKeySessions).
const (
	SessionToken = "session-token"
	AssumeRole   = "assume-role"
	PassThrough  = "pass-through"
)

// DefaultAccessCacheTTL is the default bound on cached access.
const DefaultAccessCacheTTL = 5 * time.Minute

// AddFlags registers the service's flags (all but the database) on fs.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.PlatformRoleARN, "platform-role-arn", c.PlatformRoleARN, "ARN of the identity Sluice runs as: the principal customers trust")
	fs.StringVar(&c.MasterKeyFile, "master-key-file", c.MasterKeyFile, "local master key for sealing secrets, created 0600 when missing (default {data-dir}/keys/master.key)")
	fs.StringVar(&c.KMSKeyID, "kms-key-id", c.KMSKeyID, "seal secrets with this AWS KMS key instead of the local master key")
	if c.AccessCacheTTL == 0 {
		c.AccessCacheTTL = DefaultAccessCacheTTL
	}
	fs.DurationVar(&c.AccessCacheTTL, "access-cache-ttl", c.AccessCacheTTL, "longest time MintAccess reuses minted access; revocation takes effect within it")
	if c.AccessKeySessions == "" {
		c.AccessKeySessions = SessionToken
	}
	fs.StringVar(&c.AccessKeySessions, "access-key-sessions", c.AccessKeySessions, "how access keys become session credentials for the other services: session-token (AWS GetSessionToken), assume-role (an S3-compatible store's STS, e.g. MinIO), or pass-through (no STS: hand out the keys themselves)")
	fs.StringVar(&c.AccessKeySTSURL, "access-key-sts-endpoint", c.AccessKeySTSURL, "STS endpoint access keys are exchanged at (default --sts-endpoint; MinIO's own URL for MinIO)")
	c.AWS.AddFlags(fs)
}

// sealer builds the Sealer the configuration asks for.
func (c Config) sealer(ctx context.Context) (*secretseal.Sealer, error) {
	if c.Sealer != nil {
		return c.Sealer, nil
	}
	s, err := secretseal.Choose(ctx, c.KMSKeyID, c.MasterKeyFile, func(ctx context.Context) (*kms.Client, error) {
		awsCfg, err := c.AWS.Platform(ctx)
		if err != nil {
			return nil, err
		}
		return c.AWS.KMS(awsCfg), nil
	})
	if err != nil {
		return nil, fmt.Errorf("credential service: %w", err)
	}
	return s, nil
}

// Peers are the services the credential service calls over gRPC.
type Peers struct {
	// Destinations answers which destinations use a credential.
	Destinations destinationv1.DestinationServiceClient
}

// Service implements CredentialService and CredentialAccessService.
type Service struct {
	credentialv1.UnimplementedCredentialServiceServer
	credentialv1.UnimplementedCredentialAccessServiceServer

	cfg      Config
	peers    Peers
	store    *store.Store
	now      func() time.Time
	platform aws.Config
	cache    accessCache
	// mints counts MintAccess answers.
	mints metric.Int64Counter
}

// New opens the store and answers the service.
func New(ctx context.Context, cfg Config, peers Peers) (*Service, error) {
	if peers.Destinations == nil {
		return nil, errors.New("credential service: a destination service client is required")
	}
	sealer, err := cfg.sealer(ctx)
	if err != nil {
		return nil, err
	}
	cfg.Sealer = sealer
	if cfg.PlatformRoleARN != "" {
		if !strings.HasPrefix(cfg.PlatformRoleARN, "arn:") {
			return nil, fmt.Errorf("credential service: platform role ARN %q is not an ARN", cfg.PlatformRoleARN)
		}
	}
	if cfg.AccessCacheTTL <= 0 {
		cfg.AccessCacheTTL = DefaultAccessCacheTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch cfg.AccessKeySessions {
	case "":
		cfg.AccessKeySessions = SessionToken
	case SessionToken, AssumeRole:
	case PassThrough:
		cfg.Logger.Warn("--access-key-sessions=pass-through: access-key credentials without a role are handed to the other services as the long-lived keys themselves; use it only for a store without STS")
	default:
		return nil, fmt.Errorf("credential service: --access-key-sessions must be %s, %s or %s, not %q", SessionToken, AssumeRole, PassThrough, cfg.AccessKeySessions)
	}
	if err := cfg.AWS.Check(); err != nil {
		return nil, fmt.Errorf("credential service: %w", err)
	}
	platform, err := cfg.AWS.Platform(ctx)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.DatabaseDSN)
	if err != nil {
		return nil, err
	}
	mints, err := otel.Meter("github.com/sluicehq/sluice/services/credential").Int64Counter("sluice.credential.access.mints",
		metric.WithUnit("{mint}"), metric.WithDescription("Short-lived access handed to the other services, by credential type and whether the cache had it (sluice.cache hit or miss) and outcome."))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("credential metrics: %w", err)
	}
	mints.Add(ctx, 0)
	return &Service{cfg: cfg, peers: peers, store: st, now: time.Now, platform: platform, cache: accessCache{ttl: cfg.AccessCacheTTL}, mints: mints}, nil
}

// Register adds both services to srv and closes the store on shutdown.
func (s *Service) Register(srv *grpcserver.Server) {
	srv.RegisterService(&credentialv1.CredentialService_ServiceDesc, s, Rules)
	srv.RegisterService(&credentialv1.CredentialAccessService_ServiceDesc, s, Rules)
	srv.OnShutdown(s)
}

// Close closes the store.
func (s *Service) Close() error { return s.store.Close() }

var _ io.Closer = (*Service)(nil)

// checkBucket validates bucket and region together: an access point carries
// its own region, which a region given beside it must match.
func checkBucket(v *apierror.Violations, prefix string, c *credentialv1.Credential) {
	b, err := awsname.ParseBucket(c.GetBucket())
	switch {
	case c.GetBucket() == "":
		v.Add(prefix+"bucket", "is required: an S3 bucket name or access point ARN")
	case err != nil:
		v.Add(prefix+"bucket", "%v", err)
	}
	if c.GetRegion() != "" {
		if err := awsname.CheckRegion(c.GetRegion()); err != nil {
			v.Add(prefix+"region", "%v", err)
		} else if b.AccessPoint != nil && b.AccessPoint.Region != c.GetRegion() {
			v.Add(prefix+"region", "must be the access point's region %s, or empty", b.AccessPoint.Region)
		}
	}
}

// checkPrefix applies the key prefix rules, and those of a prefix pasted
// into the customer's IAM policy.
func checkPrefix(v *apierror.Violations, field, p string) {
	if err := awsname.CheckPolicyPrefix(p); err != nil {
		v.Add(field, "%v", err)
	}
}

// checkCredential validates a credential to create.
func checkCredential(v *apierror.Violations, c *credentialv1.Credential) {
	validate.DisplayName(v, "credential.display_name", c.GetDisplayName())
	validate.Description(v, "credential.description", c.GetDescription())
	checkBucket(v, "credential.", c)
	checkPrefix(v, "credential.prefix", c.GetPrefix())
	switch t := c.GetType().(type) {
	case *credentialv1.Credential_RoleToRole:
		checkRoleARN(v, "credential.role_to_role.target_role_arn", t.RoleToRole.GetTargetRoleArn(), true)
	case *credentialv1.Credential_AccessKey:
		checkAccessKeyID(v, "credential.access_key.access_key_id", t.AccessKey.GetAccessKeyId())
		checkSecret(v, "credential.access_key.secret_access_key", t.AccessKey.GetSecretAccessKey())
		checkRoleARN(v, "credential.access_key.role_arn", t.AccessKey.GetRoleArn(), false)
	default:
		v.Add("credential.type", "is required: set role_to_role (recommended) or access_key")
	}
}

func checkRoleARN(v *apierror.Violations, field, arn string, required bool) {
	if arn == "" {
		if required {
			v.Add(field, "is required")
		}
		return
	}
	if _, err := awsname.ParseRoleARN(arn); err != nil {
		v.Add(field, "%v", err)
	}
}

func checkAccessKeyID(v *apierror.Violations, field, id string) {
	if validate.Required(v, field, id) {
		if err := awsname.CheckAccessKeyID(id); err != nil {
			v.Add(field, "%v", err)
		}
	}
}

// checkSecret never echoes the value it checks.
func checkSecret(v *apierror.Violations, field, secret string) {
	if validate.Required(v, field, secret) && (len(secret) < 16 || len(secret) > 128 || strings.ContainsAny(secret, " \t\r\n")) {
		v.Add(field, "must be the 16 to 128 character IAM secret access key, without spaces")
	}
}

// stored answers what is kept of a credential a caller sent: output-only
// fields and the secret cleared.
func stored(c *credentialv1.Credential) *credentialv1.Credential {
	c = proto.Clone(c).(*credentialv1.Credential)
	c.Etag, c.CreateTime, c.UpdateTime = "", nil, nil
	switch t := c.GetType().(type) {
	case *credentialv1.Credential_RoleToRole:
		t.RoleToRole.PlatformRoleArn, t.RoleToRole.ExternalId = "", ""
		t.RoleToRole.TrustPolicyJson, t.RoleToRole.PermissionsPolicyJson = "", ""
	case *credentialv1.Credential_AccessKey:
		t.AccessKey.SecretAccessKey, t.AccessKey.SecretSet, t.AccessKey.SecretUpdateTime = "", false, nil
		t.AccessKey.KeyCreateTime = nil
	}
	return c
}

// present answers a stored credential as callers see it: the policies to
// paste are derived here, never stored, so they always match the settings.
func (s *Service) present(c *credentialv1.Credential) *credentialv1.Credential {
	if r := c.GetRoleToRole(); r != nil {
		r.PlatformRoleArn = s.cfg.PlatformRoleARN
		r.TrustPolicyJson = awspolicy.Trust(s.cfg.PlatformRoleARN, r.GetExternalId())
		r.PermissionsPolicyJson = awspolicy.Permissions(c.GetBucket(), c.GetPrefix())
	}
	if a := c.GetAccessKey(); a != nil {
		a.SecretAccessKey = "" // never answered, whatever happened before
	}
	return c
}

// CreateCredential stores a credential, sealing its secret or generating
// its External ID.
func (s *Service) CreateCredential(ctx context.Context, req *credentialv1.CreateCredentialRequest) (*credentialv1.Credential, error) {
	var v apierror.Violations
	parent, ok := validate.Parent(&v, "parent", req.GetParent())
	validate.ID(&v, "credential_id", req.GetCredentialId())
	if c := req.GetCredential(); validate.Present(&v, "credential", c != nil) {
		checkCredential(&v, c)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if ok {
		if err := auth.Visible(ctx, parent.Tenant, req.GetParent()); err != nil {
			return nil, err
		}
	}
	name := parent.Child(collection, req.GetCredentialId()).String()
	c := stored(req.GetCredential())
	c.Name = name
	switch t := c.GetType().(type) {
	case *credentialv1.Credential_RoleToRole:
		if s.cfg.PlatformRoleARN == "" {
			return nil, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_PLATFORM_IDENTITY_NOT_CONFIGURED,
				"role-to-role credentials need Sluice's platform identity: start the credential service with --platform-role-arn")
		}
		id, err := newExternalID()
		if err != nil {
			return nil, fmt.Errorf("generate external id: %w", err)
		}
		t.RoleToRole.ExternalId = id
		created, err := s.store.Credentials.Create(ctx, req.GetParent(), c)
		if err != nil {
			return nil, alreadyExists(err, name)
		}
		return s.present(created), nil
	default: // access key, as checkCredential guarantees
		sealed, err := s.cfg.Sealer.Seal(ctx, []byte(req.GetCredential().GetAccessKey().GetSecretAccessKey()), name)
		if err != nil {
			return nil, fmt.Errorf("seal secret: %w", err)
		}
		c.GetAccessKey().SecretSet, c.GetAccessKey().SecretUpdateTime = true, timestamppb.New(s.now())
		c.GetAccessKey().KeyCreateTime = s.keyCreated(ctx, c.GetAccessKey().GetAccessKeyId(), req.GetCredential().GetAccessKey().GetSecretAccessKey())
		created, err := s.store.Credentials.Create(ctx, req.GetParent(), c, s.store.PutSecret(name, sealed))
		if err != nil {
			return nil, alreadyExists(err, name)
		}
		return s.present(created), nil
	}
}

func alreadyExists(err error, name string) error {
	if errors.Is(err, apierror.ErrAlreadyExists) {
		return apierror.Wrap(err, codes.AlreadyExists, errorsv1.ErrorReason_ERROR_REASON_ALREADY_EXISTS,
			fmt.Sprintf("%s already exists", name)).With("resource", name)
	}
	return err
}

// notFound turns a store's ErrNotFound into the answer callers get.
func notFound(err error, name string) error {
	if errors.Is(err, apierror.ErrNotFound) {
		return apierror.NotFound(name)
	}
	return err
}

// named validates a request that names one credential and checks that the
// caller may see it.
func named(ctx context.Context, name string) error {
	n, err := validate.Resource("name", name, collection)
	if err != nil {
		return err
	}
	return auth.Visible(ctx, n.Tenant, name)
}

func parseName(name string) (resourcename.Name, error) {
	n, err := resourcename.Parse(name, collection)
	if err != nil {
		return n, fmt.Errorf("stored credential name %q: %w", name, err)
	}
	return n, nil
}

// GetCredential answers a credential without its secret.
func (s *Service) GetCredential(ctx context.Context, req *credentialv1.GetCredentialRequest) (*credentialv1.Credential, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	c, err := s.store.Credentials.Get(ctx, req.GetName())
	if err != nil {
		return nil, notFound(err, req.GetName())
	}
	if err := s.readable(ctx, c); err != nil {
		return nil, err
	}
	return s.present(c), nil
}

// ListCredentials answers a page of credentials in name order.
func (s *Service) ListCredentials(ctx context.Context, req *credentialv1.ListCredentialsRequest) (*credentialv1.ListCredentialsResponse, error) {
	p, size, after, err := validate.Listing(req.GetParent(), req.GetPageSize(), req.GetPageToken(), "")
	if err != nil {
		return nil, err
	}
	if err := auth.Visible(ctx, p.Tenant, req.GetParent()); err != nil {
		return nil, err
	}
	readable, err := s.readableSet(ctx, req.GetParent())
	if err != nil {
		return nil, err
	}
	items, next, err := s.store.Credentials.List(ctx, req.GetParent(), after, size)
	if err != nil {
		return nil, err
	}
	resp := &credentialv1.ListCredentialsResponse{}
	for _, c := range items {
		if readable == nil || readable[c.GetName()] {
			resp.Credentials = append(resp.Credentials, s.present(c))
		}
	}
	if next != "" {
		resp.NextPageToken = pagination.Encode(next, pagination.Digest(req.GetParent(), ""))
	}
	return resp, nil
}

// updatable are the update_mask paths a caller may set.
var updatable = []string{
	"display_name", "description", "bucket", "region", "prefix",
	"role_to_role.target_role_arn",
	"access_key.access_key_id", "access_key.secret_access_key", "access_key.role_arn",
}

// UpdateCredential changes the fields named in update_mask. Writing
// access_key.secret_access_key rotates the sealed secret.
func (s *Service) UpdateCredential(ctx context.Context, req *credentialv1.UpdateCredentialRequest) (*credentialv1.Credential, error) {
	var v apierror.Violations
	in := req.GetCredential()
	var tenant string
	if validate.Present(&v, "credential", in != nil) {
		n, _ := validate.Name(&v, "credential.name", in.GetName(), collection)
		tenant = n.Tenant
	}
	paths := validate.UpdateMask(&v, req.GetUpdateMask(), updatable)
	if err := v.Err(); err != nil {
		return nil, err
	}
	if err := auth.Visible(ctx, tenant, in.GetName()); err != nil {
		return nil, err
	}
	name := in.GetName()
	var (
		sealed     []byte
		keyCreated *timestamppb.Timestamp
	)
	if slices.Contains(paths, "access_key.secret_access_key") {
		var sv apierror.Violations
		checkSecret(&sv, "credential.access_key.secret_access_key", in.GetAccessKey().GetSecretAccessKey())
		if err := sv.Err(); err != nil {
			return nil, err
		}
		var err error
		if sealed, err = s.cfg.Sealer.Seal(ctx, []byte(in.GetAccessKey().GetSecretAccessKey()), name); err != nil {
			return nil, fmt.Errorf("seal secret: %w", err)
		}
		keyID := in.GetAccessKey().GetAccessKeyId()
		if !slices.Contains(paths, "access_key.access_key_id") {
			cur, err := s.store.Credentials.Get(ctx, name)
			if err != nil {
				return nil, notFound(err, name)
			}
			keyID = cur.GetAccessKey().GetAccessKeyId()
		}
		keyCreated = s.keyCreated(ctx, keyID, in.GetAccessKey().GetSecretAccessKey())
	}
	mutate := func(c *credentialv1.Credential) error {
		var mv apierror.Violations
		for _, p := range paths {
			applyPath(&mv, c, in, p)
		}
		// The result must be a valid credential as a whole.
		checkBucket(&mv, "credential.", c)
		checkPrefix(&mv, "credential.prefix", c.GetPrefix())
		validate.DisplayName(&mv, "credential.display_name", c.GetDisplayName())
		validate.Description(&mv, "credential.description", c.GetDescription())
		if err := mv.Err(); err != nil {
			return err
		}
		if sealed != nil {
			c.GetAccessKey().SecretSet, c.GetAccessKey().SecretUpdateTime = true, timestamppb.New(s.now())
			c.GetAccessKey().KeyCreateTime = keyCreated
		}
		return nil
	}
	var also []resourcestore.Also
	if sealed != nil {
		also = append(also, s.store.PutSecret(name, sealed))
	}
	updated, err := s.store.Credentials.Update(ctx, name, req.GetEtag(), mutate, also...)
	if err != nil {
		return nil, notFound(err, name)
	}
	return s.present(updated), nil
}

// applyPath copies one masked field from in to c, refusing a field of the
// other credential type.
func applyPath(v *apierror.Violations, c, in *credentialv1.Credential, path string) {
	wrongType := func(want string) {
		v.Add("update_mask.paths", "%q applies to %s credentials only; create a new credential to change its type", path, want)
	}
	switch path {
	case "display_name":
		c.DisplayName = in.GetDisplayName()
	case "description":
		c.Description = in.GetDescription()
	case "bucket":
		c.Bucket = in.GetBucket()
	case "region":
		c.Region = in.GetRegion()
	case "prefix":
		c.Prefix = in.GetPrefix()
	case "role_to_role.target_role_arn":
		if c.GetRoleToRole() == nil {
			wrongType("role-to-role")
			return
		}
		checkRoleARN(v, "credential.role_to_role.target_role_arn", in.GetRoleToRole().GetTargetRoleArn(), true)
		c.GetRoleToRole().TargetRoleArn = in.GetRoleToRole().GetTargetRoleArn()
	case "access_key.access_key_id":
		if c.GetAccessKey() == nil {
			wrongType("access-key")
			return
		}
		checkAccessKeyID(v, "credential.access_key.access_key_id", in.GetAccessKey().GetAccessKeyId())
		c.GetAccessKey().AccessKeyId = in.GetAccessKey().GetAccessKeyId()
	case "access_key.secret_access_key":
		if c.GetAccessKey() == nil {
			wrongType("access-key")
		}
	case "access_key.role_arn":
		if c.GetAccessKey() == nil {
			wrongType("access-key")
			return
		}
		checkRoleARN(v, "credential.access_key.role_arn", in.GetAccessKey().GetRoleArn(), false)
		c.GetAccessKey().RoleArn = in.GetAccessKey().GetRoleArn()
	}
}

// DeleteCredential deletes a credential and its sealed secret.
func (s *Service) DeleteCredential(ctx context.Context, req *credentialv1.DeleteCredentialRequest) (*emptypb.Empty, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if !req.GetForce() {
		if err := s.notInUse(ctx, req.GetName()); err != nil {
			return nil, err
		}
	}
	if err := s.store.Credentials.Delete(ctx, req.GetName(), req.GetEtag(), s.store.DeleteSecret(req.GetName())); err != nil {
		return nil, notFound(err, req.GetName())
	}
	return &emptypb.Empty{}, nil
}

// notInUse asks the destination service, as this service and not as the
// caller (who may not see every destination), whether any destination uses
// the credential. The answer names only the destinations the caller may
// see and counts the others.
func (s *Service) notInUse(ctx context.Context, name string) error {
	n, err := parseName(name)
	if err != nil {
		return err
	}
	all, err := s.destinationsOn(ctx, n.Parent.String(), name, true)
	if err != nil {
		return err
	}
	if len(all[name]) == 0 {
		return nil
	}
	seen, err := s.destinationsOn(ctx, n.Parent.String(), name, false)
	if err != nil {
		return err
	}
	visible := seen[name]
	hidden := len(all[name]) - len(visible)
	var parts []string
	if len(visible) > 0 {
		parts = append(parts, strings.Join(visible, ", "))
	}
	if hidden > 0 {
		parts = append(parts, fmt.Sprintf("%d you cannot see", hidden))
	}
	return apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_IN_USE,
		fmt.Sprintf("destinations still use this credential: %s; point them at another credential first, or delete with force", strings.Join(parts, " and "))).
		With("destinations", strings.Join(visible, ",")).
		With("hidden_destinations", fmt.Sprint(hidden))
}

// RegenerateExternalId gives a role-to-role credential a new External ID.
func (s *Service) RegenerateExternalId(ctx context.Context, req *credentialv1.RegenerateExternalIdRequest) (*credentialv1.Credential, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	id, err := newExternalID()
	if err != nil {
		return nil, fmt.Errorf("generate external id: %w", err)
	}
	updated, err := s.store.Credentials.Update(ctx, req.GetName(), req.GetEtag(), func(c *credentialv1.Credential) error {
		r := c.GetRoleToRole()
		if r == nil {
			return apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_WRONG_CREDENTIAL_TYPE,
				"only role-to-role credentials have an External ID")
		}
		r.ExternalId = id
		return nil
	})
	if err != nil {
		return nil, notFound(err, req.GetName())
	}
	return s.present(updated), nil
}

// TestCredential proves the credential against STS and the bucket and
// answers each check; a failing check is an answer, not an error.
func (s *Service) TestCredential(ctx context.Context, req *credentialv1.TestCredentialRequest) (*credentialv1.TestResult, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	c, err := s.store.Credentials.Get(ctx, req.GetName())
	if err != nil {
		return nil, notFound(err, req.GetName())
	}
	if err := s.readable(ctx, c); err != nil {
		return nil, err
	}
	return s.test(ctx, c), nil
}

// MintAccess is internal: only the service policy may call it. It answers
// short-lived access for the credential, cached within AccessCacheTTL.
func (s *Service) MintAccess(ctx context.Context, req *credentialv1.MintAccessRequest) (*credentialv1.TemporaryAccess, error) {
	if err := named(ctx, req.GetName()); err != nil {
		return nil, err
	}
	c, err := s.store.Credentials.Get(ctx, req.GetName())
	if err != nil {
		return nil, notFound(err, req.GetName())
	}
	a, err := s.mint(ctx, c)
	if err != nil {
		return nil, accessError(err, c)
	}
	return a, nil
}

// accessError is the one place AWS causes become gRPC errors here: a cause
// the customer must fix is FailedPrecondition with its reason, a transient
// one Unavailable.
func accessError(err error, c *credentialv1.Credential) error {
	var st interface{ GRPCStatus() *status.Status }
	if errors.As(err, &st) {
		return err
	}
	cause := awserror.Classify(err, c.GetBucket())
	code := codes.FailedPrecondition
	if cause.Retryable {
		code = codes.Unavailable
	}
	if cause.Reason == errorsv1.ErrorReason_ERROR_REASON_UNKNOWN {
		return fmt.Errorf("mint access for %s: %w", c.GetName(), err)
	}
	e := apierror.Wrap(err, code, cause.Reason, cause.Message).With("credential", c.GetName())
	if cause.MissingPermission != "" {
		e = e.With("missing_permission", cause.MissingPermission)
	}
	return e
}
