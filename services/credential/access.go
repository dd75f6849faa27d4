package credential

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/awsname"
	"github.com/sluicehq/sluice/pkg/connectiontest"
)

// sessionDuration is how long an assumed-role session lasts; the cache
// hands it out for at most Config.AccessCacheTTL of that.
const sessionDuration = time.Hour

// access is short-lived AWS access for one credential.
type access struct {
	creds  aws.Credentials
	region string
}

// assume runs sts:AssumeRole on roleARN, always with externalID when the
// credential has one, signed by base (the platform identity or a
// customer's key pair).
func (s *Service) assume(ctx context.Context, ends awsclient.Endpoints, base aws.Config, roleARN, externalID, sessionName string) (aws.Credentials, error) {
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(roleARN),
		RoleSessionName: aws.String(sessionName),
		DurationSeconds: aws.Int32(int32(sessionDuration / time.Second)),
	}
	if externalID != "" {
		in.ExternalId = aws.String(externalID)
	}
	out, err := ends.STS(base).AssumeRole(ctx, in)
	if err != nil {
		return aws.Credentials{}, err
	}
	return sessionCredentials(out.Credentials), nil
}

// sessionName is the role session name CloudTrail shows the customer.
func sessionName(c *credentialv1.Credential) string {
	id := c.GetName()[strings.LastIndexByte(c.GetName(), '/')+1:]
	n := "sluice-" + id
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// Steps open names, for the connection test's first check.
const (
	stepAssumeRole = "assume_role"
	stepSession    = "get_session"
)

// open reaches AWS as the credential: the platform identity assuming the
// customer's role with the External ID, or the customer's key pair
// exchanged for session credentials (assuming its role when one is set),
// so that nothing but short-lived sessions leaves this service unless the
// operator chose pass-through. step names what was done, for the test's
// first check ("" when the keys are used as they are).
func (s *Service) open(ctx context.Context, c *credentialv1.Credential) (a access, step string, err error) {
	a.region = c.GetRegion()
	if b, perr := awsname.ParseBucket(c.GetBucket()); perr == nil && b.AccessPoint != nil {
		a.region = b.AccessPoint.Region
	}
	switch t := c.GetType().(type) {
	case *credentialv1.Credential_RoleToRole:
		a.creds, err = s.assume(ctx, s.cfg.AWS, s.platform, t.RoleToRole.GetTargetRoleArn(), t.RoleToRole.GetExternalId(), sessionName(c))
		return a, stepAssumeRole, err
	case *credentialv1.Credential_AccessKey:
		sealed, err := s.store.Secret(ctx, c.GetName())
		if err != nil {
			return a, "", fmt.Errorf("secret of %s: %w", c.GetName(), err)
		}
		secret, err := s.cfg.Sealer.Open(ctx, sealed, c.GetName())
		if err != nil {
			return a, "", fmt.Errorf("open secret of %s: %w", c.GetName(), err)
		}
		keys := aws.Credentials{AccessKeyID: t.AccessKey.GetAccessKeyId(), SecretAccessKey: string(secret)}
		ends := s.cfg.AWS
		if s.cfg.AccessKeySTSURL != "" {
			ends.STSURL = s.cfg.AccessKeySTSURL
		}
		switch {
		case t.AccessKey.GetRoleArn() != "":
			a.creds, err = s.assume(ctx, ends, ends.Static(keys), t.AccessKey.GetRoleArn(), "", sessionName(c))
			return a, stepAssumeRole, err
		case s.cfg.AccessKeySessions == PassThrough:
			a.creds = keys
			return a, "", nil
		case s.cfg.AccessKeySessions == AssumeRole:
			// S3-compatible stores (MinIO) answer AssumeRole signed by a
			// user's keys with a session of that user's rights; the role
			// ARN is required by the API and ignored by them.
			a.creds, err = s.assume(ctx, ends, ends.Static(keys), anyRoleARN, "", sessionName(c))
			if err != nil && awserror.Classify(err, c.GetBucket()).Reason == errorsv1.ErrorReason_ERROR_REASON_ROLE_NOT_ASSUMABLE {
				// There is no role here: the store refused the keys.
				err = &awserror.Cause{Reason: errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS,
					Message: "the storage service does not accept these keys: check the access key id and secret access key (or that the key is active), then update the credential"}
			}
			return a, stepSession, err
		default:
			a.creds, err = s.sessionToken(ctx, ends, keys)
			return a, stepSession, err
		}
	default:
		return a, "", errors.New("credential has no type")
	}
}

// anyRoleARN fills AssumeRole's required role ARN where the store ignores it.
const anyRoleARN = "arn:aws:iam::000000000000:role/sluice-session"

// sessionToken exchanges an IAM user's keys for session credentials with
// the same rights (sts:GetSessionToken).
func (s *Service) sessionToken(ctx context.Context, ends awsclient.Endpoints, keys aws.Credentials) (aws.Credentials, error) {
	out, err := ends.STS(ends.Static(keys)).GetSessionToken(ctx, &sts.GetSessionTokenInput{
		DurationSeconds: aws.Int32(int32(sessionDuration / time.Second)),
	})
	if err != nil {
		return aws.Credentials{}, err
	}
	return sessionCredentials(out.Credentials), nil
}

func sessionCredentials(c *ststypes.Credentials) aws.Credentials {
	return aws.Credentials{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		CanExpire:       true,
		Expires:         aws.ToTime(c.Expiration),
	}
}

func (s *Service) s3For(a access) *s3.Client {
	return s.cfg.AWS.S3(s.cfg.AWS.Static(a.creds), a.region)
}

// test proves the credential against the real services: the role (when
// there is one), then the bucket's region, listing and writing under the
// prefix, cleaning up the probe it wrote.
func (s *Service) test(ctx context.Context, c *credentialv1.Credential) *credentialv1.TestResult {
	r := connectiontest.New(ctx, c.GetBucket())
	a, step, openErr := s.open(ctx, c)
	if step != "" {
		r.Check(step, func() error { return openErr })
	} else if openErr != nil {
		r.Check("open_secret", func() error { return openErr })
	}
	client := s.s3For(a)
	bucket := c.GetBucket()
	if b, err := awsname.ParseBucket(bucket); err == nil && b.AccessPoint == nil {
		r.Check("bucket_region", func() error {
			out, err := client.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
			if err != nil {
				return err
			}
			got := string(out.LocationConstraint)
			if got == "" {
				got = "us-east-1" // S3 answers no constraint for us-east-1
			}
			if want := c.GetRegion(); want != "" && want != got {
				return &awserror.Cause{Reason: errorsv1.ErrorReason_ERROR_REASON_REGION_MISMATCH,
					Message: fmt.Sprintf("bucket %q is in %s, but the credential says %s: correct the region", bucket, got, want)}
			}
			return nil
		})
	}
	r.Check("list", func() error {
		_, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(c.GetPrefix()), MaxKeys: aws.Int32(1)})
		return err
	})
	probe := c.GetPrefix() + ".sluice-connection-test-" + randomSuffix()
	r.Check("put_object", func() error {
		_, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(probe),
			Body: strings.NewReader("Sluice connection test; safe to delete.\n")})
		return err
	})
	if !r.Failed() {
		r.Check("delete_object", func() error {
			_, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(probe)})
			if err != nil {
				cause := awserror.Classify(err, bucket)
				cause.Message += fmt.Sprintf("; the probe object %s was left behind: delete it", probe)
				return cause
			}
			return nil
		})
	}
	return r.Result()
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// accessCache keeps minted access per credential until shortly before it
// expires and at most ttl, keyed by the credential's etag so that any change
// to the credential (rotation, new External ID) mints afresh.
type accessCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	entries map[string]cachedAccess
}

type cachedAccess struct {
	etag      string
	access    access
	expires   time.Time
	handedOut time.Time
}

func (c *accessCache) get(name, etag string, now time.Time) (cachedAccess, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[name]
	if !ok || e.etag != etag || !now.Before(e.handedOut) {
		return cachedAccess{}, false
	}
	return e, true
}

func (c *accessCache) put(name string, e cachedAccess) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]cachedAccess{}
	}
	c.entries[name] = e
}

// mint answers temporary access for c, from the cache when still fresh.
func (s *Service) mint(ctx context.Context, c *credentialv1.Credential) (*credentialv1.TemporaryAccess, error) {
	now := s.now()
	kind := "access_key"
	if c.GetRoleToRole() != nil {
		kind = "role_to_role"
	}
	ctx, span := otel.Tracer("github.com/sluicehq/sluice/services/credential").Start(ctx, "mint access",
		trace.WithAttributes(attribute.String("sluice.credential", c.GetName()), attribute.String("sluice.credential.type", kind)))
	defer span.End()
	e, ok := s.cache.get(c.GetName(), c.GetEtag(), now)
	cache := "hit"
	if !ok {
		cache = "miss"
		a, _, err := s.open(ctx, c)
		if err != nil {
			s.mints.Add(ctx, 1, metric.WithAttributes(attribute.String("sluice.credential.type", kind), attribute.String("sluice.cache", cache),
				attribute.String("sluice.outcome", "failed")))
			span.SetAttributes(attribute.String("sluice.cache", cache))
			span.SetStatus(otelcodes.Error, "no access")
			return nil, err
		}
		e = cachedAccess{etag: c.GetEtag(), access: a, handedOut: now.Add(s.cache.ttl), expires: now.Add(s.cache.ttl)}
		if a.creds.CanExpire {
			e.expires = a.creds.Expires
			// Stop handing a session out a minute before it expires.
			if limit := a.creds.Expires.Add(-time.Minute); limit.Before(e.handedOut) {
				e.handedOut = limit
			}
		}
		s.cache.put(c.GetName(), e)
	}
	s.mints.Add(ctx, 1, metric.WithAttributes(attribute.String("sluice.credential.type", kind), attribute.String("sluice.cache", cache),
		attribute.String("sluice.outcome", "succeeded")))
	span.SetAttributes(attribute.String("sluice.cache", cache))
	region := e.access.region
	if region == "" {
		region = s.cfg.AWS.Region
	}
	return &credentialv1.TemporaryAccess{
		AccessKeyId:     e.access.creds.AccessKeyID,
		SecretAccessKey: e.access.creds.SecretAccessKey,
		SessionToken:    e.access.creds.SessionToken,
		ExpireTime:      timestamppb.New(e.expires),
		Bucket:          c.GetBucket(),
		Region:          region,
	}, nil
}

// keyCreated asks IAM, with the key itself, when the access key keyID was
// created, for its age against the rotation period. It answers nil when
// IAM cannot be asked (an S3-compatible store has none), the key's user
// may not call iam:ListAccessKeys, or the key is not among its keys: the
// age then counts from when its secret was set.
func (s *Service) keyCreated(ctx context.Context, keyID, secret string) *timestamppb.Timestamp {
	if !s.cfg.AWS.HasIAM() || keyID == "" || secret == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := s.cfg.AWS.IAM(s.cfg.AWS.Static(aws.Credentials{AccessKeyID: keyID, SecretAccessKey: secret})).ListAccessKeys(ctx, &iam.ListAccessKeysInput{})
	if err != nil {
		s.cfg.Logger.DebugContext(ctx, "IAM does not say when the access key was created", slog.String("access_key_id", keyID),
			slog.String("reason", awserror.Classify(err, "").Reason.String()))
		return nil
	}
	for _, k := range out.AccessKeyMetadata {
		if aws.ToString(k.AccessKeyId) == keyID && k.CreateDate != nil {
			return timestamppb.New(*k.CreateDate)
		}
	}
	return nil
}
