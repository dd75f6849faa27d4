package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
)

// retrying makes a delivery's S3 client try each request (each part on its
// own) up to RequestAttempts times when the fault is transient (SlowDown,
// 500/502/503/504, timeouts, dropped connections), after exponential
// backoff with full jitter, the SDK's standard retryer; a part tried again
// does not run the delivery again. onRetry is called for every attempt
// after a request's first.
func (s *Service) retrying(onRetry func()) func(*s3.Options) {
	p := s.requestRetry
	return func(o *s3.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = p.attempts
			so.MaxBackoff = p.limit
			// The SDK's own base is 50ms, which spends all the attempts
			// within a second: too short to outlast an S3 node restarting
			// or a throttling burst. From one second, as the delivery's
			// own reruns pause.
			so.BaseDelay = p.base
			// The client-wide retry quota would stop retrying the parts of
			// one large delivery after a burst of faults: attempts per
			// request bound it instead.
			so.RateLimiter = ratelimit.None
			// MinIO answers 499 ClientDisconnected when a connection
			// dropped before it answered; the SDK does not know it.
			so.Retryables = append(slices.Clone(so.Retryables), retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
				var api interface{ ErrorCode() string }
				if errors.As(err, &api) && api.ErrorCode() == "ClientDisconnected" {
					return aws.TrueTernary
				}
				return aws.UnknownTernary
			}))
		})
		o.APIOptions = append(o.APIOptions, countRetries(onRetry), s.hungLimit())
	}
}

// hungEndpoint is an S3 operation that did not end, all its attempts
// together, within HungLimit: the endpoint hangs (#22: with MinIO stopped,
// each part's attempts took 4 minutes, five of them, and the reruns as
// many again). The delivery fails to a TRANSIENT workflow at once rather
// than run again into the same hang; Resolve retries once S3 answers.
type hungEndpoint struct {
	op    string
	limit time.Duration
	err   error
}

func (e *hungEndpoint) Error() string {
	return fmt.Sprintf("S3 did not answer %s within %s: %v", e.op, e.limit, e.err)
}

func (e *hungEndpoint) Unwrap() error { return e.err }

// hungLimit bounds each S3 operation, every attempt of it included.
func (s *Service) hungLimit() func(*middleware.Stack) error {
	limit := s.cfg.HungLimit
	return func(st *middleware.Stack) error {
		if limit <= 0 {
			return nil
		}
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("SluiceHungLimit",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				bounded, cancel := context.WithTimeout(ctx, limit)
				defer cancel()
				out, md, err := next.HandleInitialize(bounded, in)
				var timeout interface{ Timeout() bool }
				if err != nil && ctx.Err() == nil && (errors.Is(bounded.Err(), context.DeadlineExceeded) || errors.As(err, &timeout) && timeout.Timeout()) {
					// Out of time, or every attempt timed out: either
					// way S3 hangs.
					err = &hungEndpoint{op: awsmiddleware.GetOperationName(ctx), limit: limit, err: err}
				}
				return out, md, err
			}), middleware.Before)
	}
}

// retryPolicy is when, and after how long, a failed operation is tried
// again: one policy, with the causes transient says, for every retry in
// the service. requestRetry configures the SDK's retryer for each S3
// request and minting access; runRetry runs a whole delivery again from
// its staged input.
type retryPolicy struct {
	// attempts in all, the first included.
	attempts int
	// base is the first pause's bound, doubling each attempt up to limit.
	base, limit time.Duration
}

// again reports whether an operation whose attempt (1-based) just failed
// with err is tried again, after the pause: not when err is not
// transient, the attempts are spent, or ctx ends first.
func (p retryPolicy) again(ctx context.Context, attempt int, err error) bool {
	if attempt >= p.attempts || !transient(err) || ctx.Err() != nil {
		return false
	}
	return p.wait(ctx, attempt)
}

// wait pauses before attempt+1: a uniform draw below the exponential
// bound (full jitter), so that many deliveries failing together do not
// come back together.
func (p retryPolicy) wait(ctx context.Context, attempt int) bool {
	d := min(p.limit, p.base<<min(attempt-1, 30))
	d = time.Duration(rand.Int64N(int64(d) + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// bucketAccess is a delivery's way to its bucket: the destination's
// credential minted (with the request retry policy), and a new session
// minted whenever the last is about to expire.
type bucketAccess struct {
	s      *Service
	dest   *destinationv1.Destination
	bucket string
	creds  *mintedCredentials
	region string
}

// access mints access to a destination's bucket. Every S3 client of the
// service comes from here.
func (s *Service) access(ctx context.Context, dest *destinationv1.Destination, f *flow) (*bucketAccess, error) {
	return s.accessFrom(ctx, dest, f, nil)
}

// accessFrom is access, from what pre minted when it minted for dest's
// credential.
func (s *Service) accessFrom(ctx context.Context, dest *destinationv1.Destination, f *flow, pre *preminted) (*bucketAccess, error) {
	a := &bucketAccess{s: s, dest: dest, bucket: dest.GetBucketOverride()}
	first, err := pre.take(ctx, dest.GetCredential())
	if first == nil && err == nil {
		first, err = s.mint(ctx, dest.GetCredential(), f)
	}
	if status.Code(err) == codes.NotFound {
		err = apierror.Wrap(err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_CREDENTIAL_DELETED,
			fmt.Sprintf("the destination's credential %s no longer exists: create it again, or give the destination another credential", dest.GetCredential()))
	}
	if err != nil {
		return a, err
	}
	if a.bucket == "" {
		a.bucket = first.GetBucket()
	}
	a.region = first.GetRegion()
	a.creds = &mintedCredentials{s: s, credential: dest.GetCredential(), first: first}
	return a, nil
}

// client answers an S3 client on the access, counting each request tried
// again with onRetry.
func (a *bucketAccess) client(onRetry func()) *s3.Client {
	return a.s.cfg.AWS.S3(a.s.cfg.AWS.Provided(a.creds), a.region, a.s.retrying(onRetry))
}

// mint asks the credential service for access, tried again after a
// transient failure (the service unavailable, STS throttling) by the
// request retry policy; each attempt after the first counts on
// get_access when f is set.
func (s *Service) mint(ctx context.Context, credential string, f *flow) (*credentialv1.TemporaryAccess, error) {
	for attempt := 1; ; attempt++ {
		access, err := s.peers.Access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: credential})
		if err == nil || !s.requestRetry.again(ctx, attempt, err) {
			return access, err
		}
		if f != nil {
			f.retried(ctx, stepGetAccess, 1)
		}
	}
}

// preminted is access minted while a new delivery is stored, once its
// destination is resolved: the two are independent, and a small delivery
// waited for each in turn. Its first run takes it.
type preminted struct {
	credential string
	done       chan struct{}
	access     *credentialv1.TemporaryAccess
	err        error
	taken      atomic.Bool
}

// premint starts minting access for dest's credential.
func (s *Service) premint(ctx context.Context, dest *destinationv1.Destination) *preminted {
	p := &preminted{credential: dest.GetCredential(), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.access, p.err = s.mint(ctx, p.credential, nil)
	}()
	return p
}

// take answers what p minted, once, for credential; nil and no error when
// there is nothing to take (mint then).
func (p *preminted) take(ctx context.Context, credential string) (*credentialv1.TemporaryAccess, error) {
	if p == nil || p.credential != credential || !p.taken.CompareAndSwap(false, true) {
		return nil, nil
	}
	select {
	case <-p.done:
		return p.access, p.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// accessTo resolves a destination and mints access to its bucket, as the
// service itself: no caller is waiting.
func (s *Service) accessTo(ctx context.Context, destination string) (*bucketAccess, error) {
	dest, err := s.destinationOf(ctx, destination)
	if err != nil {
		return nil, err
	}
	return s.access(ctx, dest, nil)
}

type attemptsKey struct{}

// countRetries calls onRetry for each attempt of a request after its first:
// a counter goes into each operation's context, and a middleware after the
// retry loop counts the attempts through it.
func countRetries(onRetry func()) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		err := st.Initialize.Add(middleware.InitializeMiddlewareFunc("SluiceAttemptCounter",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				return next.HandleInitialize(middleware.WithStackValue(ctx, attemptsKey{}, new(int)), in)
			}), middleware.Before)
		if err != nil {
			return err
		}
		return st.Finalize.Insert(middleware.FinalizeMiddlewareFunc("SluiceCountRetries",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				if n, ok := middleware.GetStackValue(ctx, attemptsKey{}).(*int); ok {
					if *n++; *n > 1 {
						onRetry()
					}
				}
				return next.HandleFinalize(ctx, in)
			}), "Retry", middleware.After)
	}
}

// mintedCredentials are a delivery's access to its bucket: the session
// minted when it started, then a new one from the credential service
// whenever the last is about to expire, so that a delivery that outlives
// a session goes on.
type mintedCredentials struct {
	s          *Service
	credential string
	mu         sync.Mutex
	first      *credentialv1.TemporaryAccess
}

func (m *mintedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	m.mu.Lock()
	a := m.first
	m.first = nil
	m.mu.Unlock()
	if a == nil {
		var err error
		if a, err = m.s.mint(ctx, m.credential, nil); err != nil {
			return aws.Credentials{}, err
		}
	}
	c := aws.Credentials{AccessKeyID: a.GetAccessKeyId(), SecretAccessKey: a.GetSecretAccessKey(), SessionToken: a.GetSessionToken(), Source: "sluice-credential"}
	if t := a.GetExpireTime(); t != nil {
		c.CanExpire, c.Expires = true, t.AsTime()
	}
	return c, nil
}
