// Package awsclient builds the AWS SDK clients Sluice's services use, with
// the endpoints set by service configuration (MinIO and moto locally), never
// by a caller, so that no caller can point Sluice's identity at a host of its
// choice.
package awsclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/spf13/pflag"
	"go.opentelemetry.io/contrib/instrumentation/github.com/aws/aws-sdk-go-v2/otelaws"
	"go.opentelemetry.io/otel/propagation"
)

// traced adds a span per AWS operation (S3, STS, KMS) to cfg's clients,
// under the caller's span. The trace context is not sent in the requests:
// a customer's bucket is not part of Sluice's traces.
func traced(cfg *aws.Config) {
	otelaws.AppendMiddlewares(&cfg.APIOptions, otelaws.WithTextMapPropagator(propagation.NewCompositeTextMapPropagator()))
}

// Endpoints overrides where the SDK sends requests; empty means AWS.
type Endpoints struct {
	// Region is the default region, `us-east-1` when empty.
	Region string
	STSURL string
	S3URL  string
	KMSURL string
	// SNSURL, SQSURL and EventBridgeURL are where events are sent (moto
	// locally).
	SNSURL, SQSURL, EventBridgeURL string
	// IAMURL is where IAM is asked when an access key was created; empty
	// means AWS's, asked only when S3 is AWS's too.
	IAMURL string
	// S3PathStyle addresses buckets in the path, as MinIO needs.
	S3PathStyle bool
	// S3Checksums says which checksums requests to S3 carry, since some
	// S3-compatible stores refuse the SDK's defaults: ChecksumsFull (the
	// default), ChecksumsRequired or ChecksumsNone.
	S3Checksums string
	// S3ReadTimeout fails an S3 request whose connection delivers nothing
	// for this long (DefaultS3ReadTimeout when zero, none when negative),
	// as a retryable timeout. The SDK exempts S3 from its read timeouts,
	// so a connection that goes silent (a black-holed packet path, a
	// stalled S3 node) would otherwise hold a part, and its delivery,
	// forever. The window restarts on every byte received; a part's body
	// must be sent within it once S3 answered "100 Continue".
	S3ReadTimeout time.Duration
	// PlatformCredentials, when set, replace the SDK's default chain for
	// Sluice's own identity (tests, local runs against moto).
	PlatformCredentials aws.CredentialsProvider
	// CABundle is a PEM file of certificate authorities trusted beside the
	// system's, for an S3-compatible store (or STS, KMS) behind a private
	// CA; AWS_CA_BUNDLE when empty, as in every AWS SDK.
	CABundle string
	// HTTPClient, when set, sends every request (tests record them).
	HTTPClient aws.HTTPClient
	// Timeout bounds each STS and KMS request, connecting and reading its
	// answer included (DefaultTimeout when zero): the SDK sets none, and
	// a hung STS held a credential check for 13 minutes (#22). S3's are
	// bounded by S3ReadTimeout, since a part's body takes as long as it
	// takes to send.
	Timeout time.Duration
}

// DefaultTimeout is Timeout's default.
const DefaultTimeout = 30 * time.Second

// apiHTTPClient answers the client STS and KMS requests go through.
func (e Endpoints) apiHTTPClient() aws.HTTPClient {
	if e.HTTPClient != nil {
		return e.HTTPClient
	}
	t := e.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return e.shared(&apiHTTP, t, func(c *awshttp.BuildableClient) *awshttp.BuildableClient { return c.WithTimeout(t) })
}

// apiHTTP and s3HTTP hold one HTTP client per timeout and CA bundle, so
// that every client of the process with those shares its connections.
var apiHTTP, s3HTTP sync.Map // clientKey -> aws.HTTPClient

type clientKey struct {
	timeout  time.Duration
	caBundle string
}

func (e Endpoints) shared(m *sync.Map, t time.Duration, with func(*awshttp.BuildableClient) *awshttp.BuildableClient) aws.HTTPClient {
	key := clientKey{t, e.caBundle()}
	if c, ok := m.Load(key); ok {
		return c.(aws.HTTPClient)
	}
	c := with(awshttp.NewBuildableClient())
	if key.caBundle != "" {
		roots, err := loadCABundle(key.caBundle)
		if err != nil {
			// Check refuses this at start; a bundle removed since fails
			// each request with the reason rather than trusting less.
			return failing{err}
		}
		c = c.WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = roots
		})
	}
	got, _ := m.LoadOrStore(key, aws.HTTPClient(c))
	return got.(aws.HTTPClient)
}

func (e Endpoints) caBundle() string {
	if e.CABundle != "" {
		return e.CABundle
	}
	return os.Getenv("AWS_CA_BUNDLE")
}

// loadCABundle answers the system's roots with the bundle's added.
func loadCABundle(path string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return roots, nil
}

// failing answers every request with err.
type failing struct{ err error }

func (f failing) Do(*http.Request) (*http.Response, error) { return nil, f.err }

// Check answers an error for a setting that cannot work: an unknown
// checksum mode, or a CA bundle that cannot be read.
func (e Endpoints) Check() error {
	if err := e.CheckS3Checksums(); err != nil {
		return err
	}
	if b := e.caBundle(); b != "" {
		if _, err := loadCABundle(b); err != nil {
			return err
		}
	}
	return nil
}

// AddFlags registers the endpoint flags on fs.
func (e *Endpoints) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&e.Region, "aws-region", e.Region, "default AWS region (us-east-1 when empty)")
	fs.StringVar(&e.STSURL, "sts-endpoint", e.STSURL, "STS endpoint URL instead of AWS (e.g. moto)")
	fs.StringVar(&e.S3URL, "s3-endpoint", e.S3URL, "S3 endpoint URL instead of AWS (e.g. MinIO)")
	fs.StringVar(&e.KMSURL, "kms-endpoint", e.KMSURL, "KMS endpoint URL instead of AWS")
	fs.StringVar(&e.SNSURL, "sns-endpoint", e.SNSURL, "SNS endpoint URL instead of AWS, for event subscriptions (e.g. moto)")
	fs.StringVar(&e.SQSURL, "sqs-endpoint", e.SQSURL, "SQS endpoint URL instead of AWS, for event subscriptions (e.g. moto)")
	fs.StringVar(&e.EventBridgeURL, "eventbridge-endpoint", e.EventBridgeURL, "EventBridge endpoint URL instead of AWS, for event subscriptions (e.g. moto)")
	fs.StringVar(&e.IAMURL, "iam-endpoint", e.IAMURL, "IAM endpoint URL instead of AWS, asked when an access key was created (e.g. moto)")
	fs.BoolVar(&e.S3PathStyle, "s3-path-style", e.S3PathStyle, "address buckets in the URL path (MinIO)")
	fs.StringVar(&e.CABundle, "aws-ca-bundle", e.CABundle, "PEM file of certificate authorities to trust beside the system's, for endpoints behind a private CA (default $AWS_CA_BUNDLE)")
	fs.DurationVar(&e.Timeout, "aws-timeout", e.Timeout, "bound on each STS and KMS request, answer included (default 30s)")
	fs.DurationVar(&e.S3ReadTimeout, "s3-read-timeout", e.S3ReadTimeout, "fail (and retry) an S3 request whose connection delivers nothing for this long (default 2m; negative for never); a part's body must be sent within it")
	fs.StringVar(&e.S3Checksums, "s3-checksums", e.S3Checksums, "checksums sent to S3: full (CRC32C on every part and object, and the SDK's own wherever supported; the default), required (ours, and the SDK's only where an operation requires one), none (no checksum headers, for stores that refuse them; CRC32C is still computed and answered)")
}

// Checksum modes of S3Checksums.
const (
	ChecksumsFull     = "full"
	ChecksumsRequired = "required"
	ChecksumsNone     = "none"
)

// CheckS3Checksums answers an error for an unknown mode.
func (e Endpoints) CheckS3Checksums() error {
	switch e.S3Checksums {
	case "", ChecksumsFull, ChecksumsRequired, ChecksumsNone:
		return nil
	}
	return fmt.Errorf("--s3-checksums %q: want full, required or none", e.S3Checksums)
}

// ObjectChecksums reports whether Sluice sends its own CRC32C checksums.
func (e Endpoints) ObjectChecksums() bool { return e.S3Checksums != ChecksumsNone }

func (e Endpoints) region() string {
	if e.Region == "" {
		return "us-east-1"
	}
	return e.Region
}

// Platform loads Sluice's own identity the way every AWS SDK does
// (environment, shared config, web identity, instance role).
func (e Endpoints) Platform(ctx context.Context) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion(e.region())}
	if e.PlatformCredentials != nil {
		opts = append(opts, config.WithCredentialsProvider(e.PlatformCredentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	// Set after loading: the loader refuses a custom client when
	// AWS_CA_BUNDLE is set, as it is on many machines.
	cfg.HTTPClient = e.apiHTTPClient()
	traced(&cfg)
	return cfg, nil
}

// STS answers an STS client acting as cfg's identity.
func (e Endpoints) STS(cfg aws.Config) *sts.Client {
	return sts.NewFromConfig(cfg, func(o *sts.Options) {
		if e.STSURL != "" {
			o.BaseEndpoint = aws.String(e.STSURL)
		}
	})
}

// DefaultS3ReadTimeout is S3ReadTimeout's default: a 64 MiB part sent at
// 0.5 MB/s, slower than any link a delivery should take.
const DefaultS3ReadTimeout = 2 * time.Minute

func (e Endpoints) s3HTTPClient() aws.HTTPClient {
	if e.HTTPClient != nil {
		return e.HTTPClient
	}
	t := e.S3ReadTimeout
	if t == 0 {
		t = DefaultS3ReadTimeout
	}
	if t < 0 {
		t = 0 // the SDK reads no timeout as none
	}
	return e.shared(&s3HTTP, t, func(c *awshttp.BuildableClient) *awshttp.BuildableClient {
		return c.WithReadTimeout(t).WithTransportOptions(func(tr *http.Transport) {
			// The SDK keeps 10 idle connections to a host: a bucket that
			// many deliveries write at once (16 small PUTs, the parts of
			// several large ones) then closes the rest after each request
			// and opens new ones, a TLS handshake each.
			tr.MaxIdleConnsPerHost, tr.MaxIdleConns = S3IdleConnsPerHost, 4*S3IdleConnsPerHost
		})
	})
}

// S3IdleConnsPerHost is how many idle connections to one S3 endpoint the
// services keep for reuse.
const S3IdleConnsPerHost = 64

// S3 answers an S3 client acting as cfg's identity in region (the default
// region when empty); opts adjust it further (retries, middleware).
func (e Endpoints) S3(cfg aws.Config, region string, opts ...func(*s3.Options)) *s3.Client {
	return s3.NewFromConfig(cfg, append([]func(*s3.Options){func(o *s3.Options) {
		if region != "" {
			o.Region = region
		}
		o.HTTPClient = e.s3HTTPClient()
		if e.S3URL != "" {
			o.BaseEndpoint = aws.String(e.S3URL)
		}
		o.UsePathStyle = e.S3PathStyle
		if e.S3Checksums == ChecksumsRequired || e.S3Checksums == ChecksumsNone {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	}}, opts...)...)
}

// KMS answers a KMS client acting as cfg's identity.
func (e Endpoints) KMS(cfg aws.Config) *kms.Client {
	return kms.NewFromConfig(cfg, func(o *kms.Options) {
		if e.KMSURL != "" {
			o.BaseEndpoint = aws.String(e.KMSURL)
		}
	})
}

// HasIAM reports whether IAM can be asked: an IAM endpoint is set, or
// every endpoint is AWS's own (an S3-compatible store has no IAM to ask).
func (e Endpoints) HasIAM() bool { return e.IAMURL != "" || e.S3URL == "" }

// IAM answers an IAM client acting as cfg's identity.
func (e Endpoints) IAM(cfg aws.Config) *iam.Client {
	return iam.NewFromConfig(cfg, func(o *iam.Options) {
		if e.IAMURL != "" {
			o.BaseEndpoint = aws.String(e.IAMURL)
		}
	})
}

// SNS answers an SNS client acting as cfg's identity in region.
func (e Endpoints) SNS(cfg aws.Config, region string) *sns.Client {
	return sns.NewFromConfig(cfg, func(o *sns.Options) {
		if region != "" {
			o.Region = region
		}
		if e.SNSURL != "" {
			o.BaseEndpoint = aws.String(e.SNSURL)
		}
	})
}

// SQS answers an SQS client acting as cfg's identity in region.
func (e Endpoints) SQS(cfg aws.Config, region string) *sqs.Client {
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		if region != "" {
			o.Region = region
		}
		if e.SQSURL != "" {
			o.BaseEndpoint = aws.String(e.SQSURL)
		}
	})
}

// EventBridge answers an EventBridge client acting as cfg's identity in
// region.
func (e Endpoints) EventBridge(cfg aws.Config, region string) *eventbridge.Client {
	return eventbridge.NewFromConfig(cfg, func(o *eventbridge.Options) {
		if region != "" {
			o.Region = region
		}
		if e.EventBridgeURL != "" {
			o.BaseEndpoint = aws.String(e.EventBridgeURL)
		}
	})
}

// Static answers a configuration with fixed credentials, such as a
// customer's access key pair or an assumed role's session.
func (e Endpoints) Static(creds aws.Credentials) aws.Config {
	cfg := aws.Config{
		Region:      e.region(),
		Credentials: aws.NewCredentialsCache(staticProvider{creds}),
		HTTPClient:  e.apiHTTPClient(),
	}
	traced(&cfg)
	return cfg
}

// Provided answers a configuration whose credentials come from p, cached
// and refreshed a minute before they expire.
func (e Endpoints) Provided(p aws.CredentialsProvider) aws.Config {
	cfg := aws.Config{
		Region: e.region(),
		Credentials: aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = time.Minute
		}),
		HTTPClient: e.apiHTTPClient(),
	}
	traced(&cfg)
	return cfg
}

type staticProvider struct{ c aws.Credentials }

func (p staticProvider) Retrieve(context.Context) (aws.Credentials, error) { return p.c, nil }
