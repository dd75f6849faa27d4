// Package delivery is the delivery service: it takes Arrow IPC streams in,
// writes them to destinations' buckets, and runs the workflows and
// notifications that resolve failures.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	flightgen "github.com/apache/arrow-go/v18/arrow/flight/gen/flight"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/awsname"
	"github.com/sluicehq/sluice/pkg/compression"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/multipart"
	"github.com/sluicehq/sluice/pkg/secretseal"
	"github.com/sluicehq/sluice/pkg/staging"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/pkg/webhook"
	"github.com/sluicehq/sluice/services/delivery/store"
)

const (
	deliveries    = "deliveries"
	notifications = "notifications"
	workflowLeaf  = "/workflow"
)

// Peers are the services the delivery service calls over gRPC.
type Peers struct {
	Destinations destinationv1.DestinationServiceClient
	Access       credentialv1.CredentialAccessServiceClient
	// Credentials reads a credential as the caller sees it (the trust
	// policy a workflow action shows).
	Credentials credentialv1.CredentialServiceClient
}

// Service implements DeliveryService, WorkflowService and EventService.
type Service struct {
	deliveryv1.UnimplementedDeliveryServiceServer
	deliveryv1.UnimplementedWorkflowServiceServer
	deliveryv1.UnimplementedEventServiceServer

	cfg   Config
	store *store.Store
	peers Peers
	// pool holds the part buffers every delivery of the process shares.
	pool *multipart.Pool
	// admission bounds the streams open and the bytes they hold.
	admission *admission
	// pageKey seals page tokens (pageTokenKey).
	pageKey atomic.Pointer[[]byte]
	// spool holds TAR and TGZ spools; nil: the system temporary directory.
	spool *compression.Spool
	// stagedByTenant counts, by tenant, what running deliveries stage
	// (*atomic.Int64), for the tenants' shares of staging.
	stagedByTenant sync.Map
	// staging holds deliveries' input; nil when staging is off.
	staging staging.Store
	// running holds the names of the deliveries this process runs now.
	running sync.Map
	// work is the work that outlives a request, leased to one replica at
	// a time.
	work *lease.Queue
	// swept counts the uploads the sweeper aborted.
	swept atomic.Int64
	// metrics are the service's instruments.
	metrics *metrics
	// log is for the background work.
	log *slog.Logger
	// stop ends the background work (recovery) before the store closes.
	stop func()
	// requestRetry is the retry policy of one request (an S3 request,
	// minting access); runRetry that of running a delivery again from its
	// staged input.
	requestRetry, runRetry retryPolicy
	// sealer seals webhook secrets; webhooks sends them.
	sealer   *secretseal.Sealer
	webhooks *webhook.Client
	// eventWake tells this replica's event sender that a move wrote events.
	eventWake chan struct{}
	// successes records successes on their destinations.
	successes *successes
}

// New opens the store, allocates the part buffers and answers the service.
func New(ctx context.Context, cfg Config, peers Peers) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	pool, err := multipart.NewPool(cfg.PartBuffers, cfg.PartSize)
	if err != nil {
		return nil, err
	}
	var stage staging.Store
	switch {
	case !cfg.Staging:
	case cfg.StagingURL != "":
		if stage, err = stagingOnS3(ctx, cfg); err != nil {
			return nil, err
		}
	case cfg.StagingDir == "":
		return nil, fmt.Errorf("staging needs a directory (--staging-dir) or a bucket (--staging-url)")
	default:
		if stage, err = staging.NewDir(cfg.StagingDir, cfg.StagingMaxBytes); err != nil {
			return nil, err
		}
	}
	var spool *compression.Spool
	if cfg.SpoolDir != "" {
		if spool, err = compression.OpenSpool(cfg.SpoolDir, cfg.SpoolMaxBytes); err != nil {
			return nil, err
		}
	}
	st, err := store.Open(ctx, cfg.DatabaseDSN)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, store: st, peers: peers, pool: pool, staging: stage, work: st.Work(cfg.Instance, cfg.LeaseTTL), log: slog.Default(),
		admission: newAdmission(cfg), spool: spool,
		requestRetry: retryPolicy{attempts: cfg.RequestAttempts, base: time.Second, limit: cfg.RequestMaxBackoff},
		runRetry:     retryPolicy{attempts: cfg.TransientRetries + 1, base: time.Second, limit: 30 * time.Second},
		eventWake:    make(chan struct{}, 1),
		webhooks: webhook.NewClient(webhook.Options{AllowPrivate: cfg.Events.WebhookAllowPrivate, AllowHTTP: cfg.Events.WebhookAllowHTTP,
			Timeout: cfg.Events.WebhookTimeout})}
	s.successes = &successes{record: func(ctx context.Context, req *destinationv1.RecordDeliveryRequest) error {
		_, err := s.peers.Destinations.RecordDelivery(ctx, req)
		return err
	}}
	if s.sealer, err = cfg.Events.sealer(ctx, cfg.AWS); err != nil {
		st.Close()
		return nil, err
	}
	if s.metrics, err = s.newMetrics(); err != nil {
		st.Close()
		return nil, fmt.Errorf("delivery metrics: %w", err)
	}
	return s, nil
}

// stagingOnS3 opens the staging store of --staging-url.
func stagingOnS3(ctx context.Context, cfg Config) (staging.Store, error) {
	u, err := url.Parse(cfg.StagingURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("--staging-url %q: want s3://bucket/prefix", cfg.StagingURL)
	}
	if err := awsname.CheckBucketName(u.Host); err != nil {
		return nil, fmt.Errorf("--staging-url: %w", err)
	}
	awsCfg, err := cfg.AWS.Platform(ctx)
	if err != nil {
		return nil, err
	}
	pool, err := staging.NewS3Pool(4)
	if err != nil {
		return nil, err
	}
	return staging.NewS3(ctx, cfg.AWS.S3(awsCfg, ""), u.Host, strings.TrimPrefix(u.Path, "/"), pool, cfg.StagingMaxBytes)
}

// Rules says who may call each method: every delivery and workflow method
// takes any caller of the tenant; what each may see of a delivery follows
// the destination's access rule, asked of the destination service.
var Rules = auth.Rules{
	deliveryv1.DeliveryService_Deliver_FullMethodName:                 auth.AnyCaller,
	deliveryv1.DeliveryService_GetDelivery_FullMethodName:             auth.AnyCaller,
	deliveryv1.DeliveryService_ListDeliveries_FullMethodName:          auth.AnyCaller,
	deliveryv1.DeliveryService_CancelDelivery_FullMethodName:          auth.AnyCaller,
	deliveryv1.DeliveryService_WatchDelivery_FullMethodName:           auth.AnyCaller,
	deliveryv1.WorkflowService_GetWorkflow_FullMethodName:             auth.AnyCaller,
	deliveryv1.WorkflowService_ListWorkflows_FullMethodName:           auth.AnyCaller,
	deliveryv1.WorkflowService_ResolveWorkflow_FullMethodName:         auth.AnyCaller,
	deliveryv1.WorkflowService_ListNotifications_FullMethodName:       auth.AnyCaller,
	deliveryv1.WorkflowService_AcknowledgeNotification_FullMethodName: auth.AnyCaller,
	// Subscriptions are integrations an administrator sets up: where an
	// environment's events go, and through which credential.
	deliveryv1.EventService_CreateSubscription_FullMethodName: auth.Admin,
	deliveryv1.EventService_GetSubscription_FullMethodName:    auth.Admin,
	deliveryv1.EventService_ListSubscriptions_FullMethodName:  auth.Admin,
	deliveryv1.EventService_UpdateSubscription_FullMethodName: auth.Admin,
	deliveryv1.EventService_DeleteSubscription_FullMethodName: auth.Admin,
	// Events are seen as the deliveries they are about.
	deliveryv1.EventService_GetEvent_FullMethodName:   auth.AnyCaller,
	deliveryv1.EventService_ListEvents_FullMethodName: auth.AnyCaller,
}

// Register adds both services to srv and closes the store on shutdown.
func (s *Service) Register(srv *grpcserver.Server) {
	srv.RegisterService(&deliveryv1.DeliveryService_ServiceDesc, s, Rules)
	srv.RegisterService(&deliveryv1.WorkflowService_ServiceDesc, s, Rules)
	srv.RegisterService(&deliveryv1.EventService_ServiceDesc, s, Rules)
	srv.RegisterService(&flightgen.FlightService_ServiceDesc, &flightServer{svc: s}, FlightRules)
	srv.OnShutdown(s)
}

// Close stops the background work and closes the store.
func (s *Service) Close() error {
	if s.stop != nil {
		s.stop()
	}
	s.successes.wait()
	_ = s.metrics.registration.Unregister()
	return s.store.Close()
}

// errStopping is the cause of the background work's end: the service is
// stopping, and what it was running is left for the next holder.
var errStopping = errors.New("the delivery service is stopping")

// Start begins the background work: it takes back at once what this
// instance held when it stopped, then claims, as their leases run out,
// the work of replicas that stopped, and runs the sweeper and the expiry
// of held input, one replica at a time.
func (s *Service) Start(log *slog.Logger) {
	s.log = log
	ctx, cancel := context.WithCancelCause(context.Background())
	own := s.claimOwn(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	go func() {
		defer close(done)
		s.workLoop(ctx, own, &wg)
	}()
	s.stop = func() {
		cancel(errStopping)
		<-done
		wg.Wait()
	}
}

func named(ctx context.Context, field, name, collection string) error {
	n, err := validate.Resource(field, name, collection)
	if err != nil {
		return err
	}
	return auth.Visible(ctx, n.Tenant, name)
}

// workflowNamed validates `.../deliveries/{delivery}/workflow`.
func workflowNamed(ctx context.Context, name string) error {
	delivery, ok := strings.CutSuffix(name, workflowLeaf)
	if !ok {
		var v apierror.Violations
		v.Add("name", "must have the form tenants/{tenant}/environments/{environment}/deliveries/{delivery}/workflow")
		return v.Err()
	}
	return named(ctx, "name", delivery, deliveries)
}
