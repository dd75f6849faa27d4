package delivery

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/multipart"
	"github.com/sluicehq/sluice/pkg/secretseal"
)

// MaxMessageBytes bounds one DeliverRequest (and one FlightData), also
// once gRPC has decompressed it: a slice of an Arrow stream, cut anywhere,
// so a 64 MiB record batch still goes as several messages. 1 to 4 MiB per
// message goes fastest. Each stream may hold one message beyond the
// receive budget while it arrives, so this bounds that too (#22: 64 MiB
// messages gzipped to 63 KiB took 156 MiB per stalled stream).
const MaxMessageBytes = 8 << 20

// ServerConfig sets the delivery server's message limit.
func ServerConfig(c *grpcserver.Config) {
	c.MaxRecvMsgBytes = MaxMessageBytes
	c.Decode = decodeRequest
}

// Config configures the delivery service.
type Config struct {
	// DatabaseDSN is a SQLite path (`sqlite:...`) or a PostgreSQL URL.
	DatabaseDSN string
	// AWS says where S3 is (MinIO locally).
	AWS awsclient.Endpoints
	// PartSize is the size of multipart parts, and of each pooled buffer.
	PartSize int
	// PartBuffers is how many part buffers the process holds, shared by
	// every delivery: PartBuffers x PartSize bounds the memory of uploads.
	PartBuffers int
	// PartConcurrency is how many parts of one object are sent at once.
	PartConcurrency int
	// PartitionBuffer bounds the Arrow data one partitioned delivery holds
	// while it gathers rows by partition.
	PartitionBuffer int64
	// Ingest bounds what one Arrow stream may ask of the process.
	Ingest arrowingest.Limits
	// ProgressInterval is how often a running delivery's counters are
	// stored, so that GetDelivery shows them live.
	ProgressInterval time.Duration
	// Staging keeps each delivery's Arrow input (see pkg/staging), so that
	// a failed delivery can run again and an interrupted stream resume
	// without the caller sending it twice. Off, a failed delivery needs
	// its caller to send again.
	Staging bool
	// StagingDir holds staged input; {data-dir}/staging when empty.
	StagingDir string
	// StagingURL, `s3://bucket/prefix`, stages in a bucket of Sluice's own
	// instead, written as Sluice's platform identity: for replicas that
	// share their work or keep no disk.
	StagingURL string
	// StagingMaxBytes caps the staging directory: past it, new deliveries
	// are refused with RESOURCE_EXHAUSTED rather than the disk filled.
	StagingMaxBytes int64
	// StagingTenantMaxBytes is one tenant's share of staging: what its
	// running deliveries stage and its stopped ones keep, together; past
	// it, its new deliveries are refused STAGING_FULL while the others'
	// go on. StagingMaxBytes/4 when 0.
	StagingTenantMaxBytes int64
	// SpoolDir holds TAR and TGZ spools (a file's plaintext rows until the
	// archive's header can say its size): {data-dir}/spool by default,
	// emptied on start; SpoolMaxBytes caps them (0: no cap).
	SpoolDir      string
	SpoolMaxBytes int64
	// StagingRetention is how long a failed delivery's input is kept.
	StagingRetention time.Duration
	// ResumeWindow is how long an interrupted stream may be resumed.
	ResumeWindow time.Duration
	// Instance names this service instance: the deliveries it runs are
	// recorded as its own, so that when it starts again it takes back
	// what it was running. The host name by default; give each replica
	// its own, stable across restarts (a StatefulSet's pod name).
	Instance string
	// Events says how events are sent to subscriptions.
	Events EventsConfig
	// Health says how often the watcher tests destinations in use, and
	// when access keys are due for rotation.
	Health HealthConfig
	// Clock, when set, is the time the health watcher sees (tests move it
	// forward); the wall clock otherwise.
	Clock func() time.Time
	// TransientRetries is how many times a delivery runs again from staged
	// input after a transient fault before it fails.
	TransientRetries int
	// RequestAttempts is how many times one S3 request (a part, a
	// completion) is tried when S3 answers with a transient fault, before
	// the delivery runs again from staged input.
	RequestAttempts int
	// RequestMaxBackoff caps the pause between two attempts of a request.
	RequestMaxBackoff time.Duration
	// HungLimit bounds each S3 operation, all its attempts together: past
	// it the endpoint is taken to hang and the delivery fails to a
	// TRANSIENT workflow without running again (0: no bound).
	HungLimit time.Duration
	// SweepInterval is how often the sweeper looks for multipart uploads
	// left behind; SweepGrace how old one must be before it is aborted.
	SweepInterval, SweepGrace time.Duration
	// RecoverInterval is how often the service looks for work whose holder
	// stopped keeping its lease (deliveries to take over), and for held
	// input past its time.
	RecoverInterval time.Duration
	// LeaseTTL is how long work stays with a replica that stopped beating:
	// how soon another takes over the deliveries of one that died.
	LeaseTTL time.Duration
	// Workers bounds the claimed work (taken-over deliveries, the sweeper)
	// a replica runs at once.
	Workers int
	// MaxStreams bounds the Deliver and DoPut streams open at once, and
	// MaxTenantStreams those of one tenant: past them a stream is refused
	// with RESOURCE_EXHAUSTED (TOO_MANY_STREAMS) and RetryInfo.
	MaxStreams, MaxTenantStreams int
	// MaxRunning bounds the streams that run past their first MiB at once,
	// and MaxTenantRunning those of one tenant; the others wait for a slot
	// (the tenant with the fewest running goes first), holding little.
	// With the receive budget they bound a Parquet row group's bytes
	// (rowGroupBytes), so that running deliveries never wait on each
	// other's.
	MaxRunning, MaxTenantRunning int
	// ReceiveBudget bounds the bytes all streams hold together: received
	// messages not yet consumed, and Arrow message bodies until the
	// batches decoded from them are released. A stream that needs more
	// waits, at most BudgetWait, then is interrupted (resumable) with
	// RESOURCE_EXHAUSTED (RECEIVE_BUDGET_SPENT) and RetryInfo.
	ReceiveBudget int64
	BudgetWait    time.Duration
	// StreamIdleTimeout interrupts a stream that sends nothing for that
	// long, and StreamMinRate one that sends fewer bytes a second over
	// such a window (0: no minimum); interrupted, it is resumable like a
	// broken stream (STREAM_IDLE).
	StreamIdleTimeout time.Duration
	StreamMinRate     int64
}

// DefaultConfig answers the defaults: 16 MiB parts, 8 buffers (128 MiB),
// 4 parts in flight per object.
func DefaultConfig() Config {
	return Config{
		PartSize:          multipart.DefaultPartSize,
		PartBuffers:       8,
		PartConcurrency:   4,
		PartitionBuffer:   fileset.DefaultPartitionBuffer,
		Ingest:            arrowingest.DefaultLimits,
		ProgressInterval:  time.Second,
		Staging:           true,
		StagingMaxBytes:   50 << 30,
		SpoolMaxBytes:     50 << 30,
		StagingRetention:  7 * 24 * time.Hour,
		ResumeWindow:      time.Hour,
		Instance:          hostname(),
		RecoverInterval:   5 * time.Second,
		LeaseTTL:          10 * time.Second,
		Workers:           4,
		TransientRetries:  4,
		RequestAttempts:   5,
		RequestMaxBackoff: 20 * time.Second,
		SweepInterval:     10 * time.Minute,
		SweepGrace:        time.Hour,
		HungLimit:         5 * time.Minute,
		MaxStreams:        64,
		MaxTenantStreams:  16,
		MaxRunning:        4,
		MaxTenantRunning:  2,
		ReceiveBudget:     512 << 20,
		BudgetWait:        30 * time.Second,
		StreamIdleTimeout: 2 * time.Minute,
		StreamMinRate:     256,
		Health:            HealthConfig{Interval: 15 * time.Minute, KeyRotationDays: 90, KeyWarnDays: 14},
		Events: EventsConfig{
			WebhookTimeout: 10 * time.Second,
			RetryInitial:   5 * time.Second,
			RetryMax:       10 * time.Minute,
			RetryWindow:    72 * time.Hour,
			FailingAfter:   5,
			Poll:           time.Second,
		},
	}
}

// HealthConfig configures the health watcher.
type HealthConfig struct {
	// Interval is the pause between two passes, jittered by a tenth;
	// negative turns the watcher off.
	Interval time.Duration
	// KeyRotationDays is how long an access key lives; a warning is
	// raised KeyWarnDays before.
	KeyRotationDays, KeyWarnDays int
}

// EventsConfig configures the sending of events.
type EventsConfig struct {
	// WebhookAllowPrivate lets webhooks go to private, loopback and
	// link-local addresses: the operator's own network, or tests.
	WebhookAllowPrivate bool
	// WebhookAllowHTTP lets webhook URLs be plain http://.
	WebhookAllowHTTP bool
	// WebhookTimeout bounds one webhook request.
	WebhookTimeout time.Duration
	// RetryInitial is the pause after a send's first failed attempt; it
	// doubles, with jitter, up to RetryMax.
	RetryInitial, RetryMax time.Duration
	// RetryWindow is how long an event is tried before it is given up.
	RetryWindow time.Duration
	// FailingAfter is how many failed attempts in a row mark a subscription
	// FAILING and raise a notification.
	FailingAfter int
	// Poll is how often a replica looks for events to send that another
	// replica wrote (its own it sends at once).
	Poll time.Duration
	// MasterKeyFile or KMSKeyID seal webhook secrets, as the credential
	// service seals credentials' secrets; Sealer, when set, replaces both.
	MasterKeyFile, KMSKeyID string
	Sealer                  *secretseal.Sealer
}

// sealer answers the Sealer of webhook secrets; nil when none is
// configured (webhook subscriptions are then refused).
func (e EventsConfig) sealer(ctx context.Context, endpoints awsclient.Endpoints) (*secretseal.Sealer, error) {
	if e.Sealer != nil {
		return e.Sealer, nil
	}
	if e.KMSKeyID == "" && e.MasterKeyFile == "" {
		return nil, nil
	}
	s, err := secretseal.Choose(ctx, e.KMSKeyID, e.MasterKeyFile, func(ctx context.Context) (*kms.Client, error) {
		cfg, err := endpoints.Platform(ctx)
		if err != nil {
			return nil, err
		}
		return endpoints.KMS(cfg), nil
	})
	if err != nil {
		return nil, fmt.Errorf("delivery service: %w", err)
	}
	return s, nil
}

func (e *EventsConfig) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&e.WebhookAllowPrivate, "webhook-allow-private", e.WebhookAllowPrivate, "let webhook subscriptions send to private, loopback and link-local addresses (your own network; never where customers type URLs you do not trust)")
	fs.BoolVar(&e.WebhookAllowHTTP, "webhook-allow-http", e.WebhookAllowHTTP, "let webhook URLs be plain http:// (https:// only by default)")
	fs.DurationVar(&e.WebhookTimeout, "webhook-timeout", e.WebhookTimeout, "bound on one webhook request, connecting and the answer included")
	fs.DurationVar(&e.RetryInitial, "event-retry-initial", e.RetryInitial, "pause after an event's first failed send; it doubles, with jitter, up to --event-retry-max")
	fs.DurationVar(&e.RetryMax, "event-retry-max", e.RetryMax, "longest pause between two attempts to send an event")
	fs.DurationVar(&e.RetryWindow, "event-retry-window", e.RetryWindow, "how long an event is tried before it is given up")
	fs.IntVar(&e.FailingAfter, "event-failing-after", e.FailingAfter, "failed attempts in a row that mark a subscription FAILING and raise a notification")
	fs.DurationVar(&e.Poll, "event-poll", e.Poll, "how often to look for events to send that other replicas wrote")
	// In `sluice serve` the credential service has these flags already;
	// serve hands its KMS key on.
	if fs.Lookup("master-key-file") == nil {
		fs.StringVar(&e.MasterKeyFile, "master-key-file", e.MasterKeyFile, "file of the local master key that seals webhook secrets (default {data-dir}/keys/events.key); replicas share it")
	}
	if fs.Lookup("kms-key-id") == nil {
		fs.StringVar(&e.KMSKeyID, "kms-key-id", e.KMSKeyID, "KMS key that seals webhook secrets instead of a local master key")
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "sluice-delivery"
	}
	return h
}

// AddFlags registers the delivery flags on fs (the AWS endpoints are
// registered by whoever owns them).
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.PartSize, "part-size", c.PartSize, "multipart part size in bytes (at least 5 MiB)")
	fs.IntVar(&c.PartBuffers, "part-buffers", c.PartBuffers, "part buffers shared by all deliveries: their number times --part-size bounds upload memory")
	fs.IntVar(&c.PartConcurrency, "part-concurrency", c.PartConcurrency, "parts of one object uploaded at once")
	fs.Int64Var(&c.PartitionBuffer, "partition-buffer-bytes", c.PartitionBuffer, "Arrow data one partitioned delivery gathers by partition before it writes the partitions of its oldest rows: larger makes fewer, larger files per partition")
	fs.Int64Var(&c.Ingest.MaxBatchBytes, "max-batch-bytes", c.Ingest.MaxBatchBytes, "largest Arrow record batch body accepted, also once decompressed")
	fs.BoolVar(&c.Staging, "staging", c.Staging, "keep each delivery's Arrow input so a failed delivery can run again and an interrupted stream resume (off: a failed delivery needs its caller to send again)")
	fs.StringVar(&c.StagingDir, "staging-dir", c.StagingDir, "directory of staged input (default {data-dir}/staging)")
	fs.StringVar(&c.StagingURL, "staging-url", c.StagingURL, "stage in S3 instead: s3://bucket/prefix, a bucket of Sluice's own, written as its platform identity")
	fs.Int64Var(&c.StagingMaxBytes, "staging-max-bytes", c.StagingMaxBytes, "cap on staged input: past it new deliveries are refused with RESOURCE_EXHAUSTED")
	fs.Int64Var(&c.StagingTenantMaxBytes, "staging-tenant-max-bytes", c.StagingTenantMaxBytes, "one tenant's share of staging, its running deliveries' input and its failed ones' kept input together (default a quarter of --staging-max-bytes); past it that tenant's new deliveries are refused with RESOURCE_EXHAUSTED")
	fs.StringVar(&c.SpoolDir, "spool-dir", c.SpoolDir, "directory of TAR and TGZ spools (default {data-dir}/spool), emptied on start")
	fs.Int64Var(&c.SpoolMaxBytes, "spool-max-bytes", c.SpoolMaxBytes, "cap on spooled TAR and TGZ files together; past it the delivery fails with RESOURCE_EXHAUSTED")
	fs.DurationVar(&c.StagingRetention, "staging-retention", c.StagingRetention, "how long a failed delivery's input is kept")
	fs.DurationVar(&c.ResumeWindow, "resume-window", c.ResumeWindow, "how long a caller may resume an interrupted stream")
	fs.IntVar(&c.RequestAttempts, "s3-attempts", c.RequestAttempts, "times one S3 request (a part, a completion) is tried on a transient fault, with exponential backoff and full jitter, before the delivery runs again from staged input")
	fs.DurationVar(&c.RequestMaxBackoff, "s3-max-backoff", c.RequestMaxBackoff, "longest pause between two attempts of one S3 request")
	fs.DurationVar(&c.HungLimit, "s3-hung-limit", c.HungLimit, "bound on one S3 operation, all its attempts together; past it S3 is taken to hang and the delivery fails to a TRANSIENT workflow without running again (0: none)")
	fs.IntVar(&c.TransientRetries, "transient-retries", c.TransientRetries, "times a delivery runs again from staged input after a transient fault (S3 unavailable, throttled, timing out) before it fails")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", c.SweepInterval, "how often the sweeper aborts multipart uploads no delivery owns under the prefixes deliveries write")
	fs.DurationVar(&c.SweepGrace, "sweep-grace", c.SweepGrace, "how old an upload no delivery owns must be before the sweeper aborts it")
	fs.DurationVar(&c.RecoverInterval, "recover-interval", c.RecoverInterval, "how often to look for work other replicas stopped keeping (deliveries to take over) and for held input past its time")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "how long a replica's work stays its own once it stops beating: how soon another replica takes over the deliveries of one that died")
	fs.IntVar(&c.Workers, "workers", c.Workers, "taken-over deliveries and periodic passes a replica runs at once")
	fs.IntVar(&c.MaxStreams, "max-streams", c.MaxStreams, "Deliver and DoPut streams open at once; past it streams are refused with RESOURCE_EXHAUSTED and RetryInfo")
	fs.IntVar(&c.MaxTenantStreams, "max-tenant-streams", c.MaxTenantStreams, "streams one tenant may have open at once")
	fs.IntVar(&c.MaxRunning, "max-running", c.MaxRunning, "streams that run past their first MiB at once (the others wait, holding little; the tenant with the fewest running goes first)")
	fs.IntVar(&c.MaxTenantRunning, "max-tenant-running", c.MaxTenantRunning, "streams of one tenant that run past their first MiB at once")
	fs.Int64Var(&c.ReceiveBudget, "receive-budget", c.ReceiveBudget, "bytes all streams may hold together (received messages, Arrow message bodies until their batches are written); a stream that needs more waits --budget-wait, then is interrupted, resumable")
	fs.DurationVar(&c.BudgetWait, "budget-wait", c.BudgetWait, "how long a stream waits for receive budget before it is interrupted")
	fs.DurationVar(&c.StreamIdleTimeout, "stream-idle-timeout", c.StreamIdleTimeout, "interrupt (resumably) a stream that sends nothing for this long; 0 never")
	fs.Int64Var(&c.StreamMinRate, "stream-min-rate", c.StreamMinRate, "interrupt (resumably) a stream that sends fewer bytes a second than this over an idle-timeout window; 0 no minimum")
	c.Events.addFlags(fs)
	fs.DurationVar(&c.Health.Interval, "health-interval", c.Health.Interval, "how often the health watcher tests each destination in use (jittered by a tenth; negative: never), warning before a delivery fails")
	fs.IntVar(&c.Health.KeyRotationDays, "key-rotation-days", c.Health.KeyRotationDays, "rotation period of access keys, counted from when a credential's secret was set")
	fs.IntVar(&c.Health.KeyWarnDays, "key-warn-days", c.Health.KeyWarnDays, "days before the end of the rotation period that a warning is raised")
	fs.StringVar(&c.Instance, "instance", c.Instance, "name of this service instance, unique among the replicas and stable across restarts (a pod name): on start it takes back at once the work it held")
}

// tenantStaging is one tenant's share of staging (0: none).
// withDefaults answers c with the default of every setting left at its
// zero value: the one place defaults are applied.
func (c Config) withDefaults() Config {
	def := DefaultConfig()
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&c.PartSize, def.PartSize)
	set(&c.PartBuffers, def.PartBuffers)
	set(&c.PartConcurrency, def.PartConcurrency)
	if c.PartitionBuffer <= 0 {
		c.PartitionBuffer = def.PartitionBuffer
	}
	set(&c.Workers, def.Workers)
	set(&c.MaxStreams, def.MaxStreams)
	set(&c.MaxTenantStreams, def.MaxTenantStreams)
	set(&c.MaxRunning, def.MaxRunning)
	set(&c.MaxTenantRunning, def.MaxTenantRunning)
	setD(&c.ProgressInterval, def.ProgressInterval)
	setD(&c.RecoverInterval, def.RecoverInterval)
	setD(&c.SweepInterval, def.SweepInterval)
	setD(&c.SweepGrace, def.SweepGrace)
	setD(&c.LeaseTTL, def.LeaseTTL)
	setD(&c.BudgetWait, def.BudgetWait)
	if c.Health.Interval == 0 {
		c.Health.Interval = def.Health.Interval
	}
	set(&c.Health.KeyRotationDays, def.Health.KeyRotationDays)
	if c.Health.KeyWarnDays <= 0 {
		c.Health.KeyWarnDays = def.Health.KeyWarnDays
	}
	setD(&c.Events.WebhookTimeout, def.Events.WebhookTimeout)
	setD(&c.Events.RetryInitial, def.Events.RetryInitial)
	setD(&c.Events.RetryMax, def.Events.RetryMax)
	setD(&c.Events.RetryWindow, def.Events.RetryWindow)
	setD(&c.Events.Poll, def.Events.Poll)
	set(&c.Events.FailingAfter, def.Events.FailingAfter)
	if c.Instance == "" {
		c.Instance = def.Instance
	}
	if c.ReceiveBudget == 0 {
		c.ReceiveBudget = def.ReceiveBudget
	}
	if c.Ingest.MaxBatchBytes == 0 {
		c.Ingest.MaxBatchBytes = arrowingest.DefaultLimits.MaxBatchBytes
	}
	return c
}

func (c Config) tenantStaging() int64 {
	if c.StagingTenantMaxBytes > 0 {
		return c.StagingTenantMaxBytes
	}
	return c.StagingMaxBytes / 4
}

// tenantBudget is one tenant's share of the receive budget: half, so that
// the others always have room, but at least a record batch and a message.
func (c Config) tenantBudget() int64 {
	return max(c.ReceiveBudget/2, c.Ingest.MaxBatchBytes+MaxMessageBytes)
}

// rowGroupBytes bounds the Arrow bytes a Parquet row group gathers: two
// row groups (one encoding, one gathering) and two messages of each
// running delivery fit their tenant's share of the receive budget, and
// the whole of it, beside the bytes the streams waiting for a slot hold.
// Larger row groups would let running deliveries hold the budget while
// each waits for more of it.
func (c Config) rowGroupBytes() int64 {
	tenant := (c.tenantBudget() - int64(c.MaxTenantStreams)*smallInput) / int64(max(1, min(c.MaxTenantRunning, c.MaxRunning)))
	all := (c.ReceiveBudget - int64(c.MaxStreams)*smallInput) / int64(max(1, c.MaxRunning))
	return max((min(tenant, all)-2*MaxMessageBytes)/2, 1<<20)
}

func (c Config) check() error {
	if c.PartSize < multipart.MinPartSize {
		return fmt.Errorf("--part-size %d is under S3's minimum of %d bytes", c.PartSize, multipart.MinPartSize)
	}
	if c.PartBuffers < 2 {
		return fmt.Errorf("--part-buffers must be at least 2")
	}
	if c.PartConcurrency < 1 {
		return fmt.Errorf("--part-concurrency must be at least 1")
	}
	if c.RequestAttempts < 1 || c.RequestAttempts > 20 {
		return fmt.Errorf("--s3-attempts must be between 1 and 20")
	}
	if c.LeaseTTL < 300*time.Millisecond {
		return fmt.Errorf("--lease-ttl must be at least 300ms")
	}
	if c.TransientRetries < 0 {
		return fmt.Errorf("--transient-retries must not be negative")
	}
	if c.MaxStreams < 1 || c.MaxTenantStreams < 1 {
		return fmt.Errorf("--max-streams and --max-tenant-streams must be at least 1")
	}
	if c.MaxRunning < 1 || c.MaxTenantRunning < 1 {
		return fmt.Errorf("--max-running and --max-tenant-running must be at least 1")
	}
	if min := c.Ingest.MaxBatchBytes + MaxMessageBytes; c.ReceiveBudget < min {
		return fmt.Errorf("--receive-budget %d must hold at least one record batch and one message (--max-batch-bytes + %d = %d)", c.ReceiveBudget, MaxMessageBytes, min)
	}
	if c.BudgetWait <= 0 {
		return fmt.Errorf("--budget-wait must be positive")
	}
	if c.StreamIdleTimeout < 0 || c.StreamMinRate < 0 {
		return fmt.Errorf("--stream-idle-timeout and --stream-min-rate must not be negative")
	}
	return c.AWS.Check()
}
