package delivery

import (
	"context"
	"errors"
	"fmt"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
)

// retrying makes a delivery's S3 client try each request (each part on its
// own) up to RequestAttempts times when the fault is transient (SlowDown,
// 500/502/503/504, timeouts, dropped connections), after exponential
// backoff with full jitter, the SDK's standard retryer; a part tried again
// does not run the delivery again. onRetry is called for every attempt
// after a request's first.
func (s *Service) retrying(onRetry func()) func(*s3.Options) {
	return func(o *s3.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = s.cfg.RequestAttempts
			so.MaxBackoff = s.cfg.RequestMaxBackoff
			// The SDK's own base is 50ms, which spends all the attempts
			// within a second: too short to outlast an S3 node restarting
			// or a throttling burst. From one second, as the delivery's
			// own reruns pause.
			so.BaseDelay = time.Second
			// The client-wide retry quota would stop retrying the parts of
			// one large delivery after a burst of faults: attempts per
			// request bound it instead.
			so.RateLimiter = ratelimit.None
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
		if a, err = m.s.peers.Access.MintAccess(ctx, &credentialv1.MintAccessRequest{Name: m.credential}); err != nil {
			return aws.Credentials{}, err
		}
	}
	c := aws.Credentials{AccessKeyID: a.GetAccessKeyId(), SecretAccessKey: a.GetSecretAccessKey(), SessionToken: a.GetSessionToken(), Source: "sluice-credential"}
	if t := a.GetExpireTime(); t != nil {
		c.CanExpire, c.Expires = true, t.AsTime()
	}
	return c, nil
}
