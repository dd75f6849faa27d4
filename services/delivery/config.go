package delivery

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/awsclient"
	"github.com/sluicehq/sluice/pkg/grpcserver"
	"github.com/sluicehq/sluice/pkg/multipart"
)

// MaxMessageBytes bounds one DeliverRequest: a slice of an Arrow stream of
// up to 64 MiB. 1 to 4 MiB per message goes fastest.
const MaxMessageBytes = 64 << 20

// ServerConfig sets the delivery server's message limit.
func ServerConfig(c *grpcserver.Config) { c.MaxRecvMsgBytes = MaxMessageBytes }

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
	// Ingest bounds what one Arrow stream may ask of the process.
	Ingest arrowingest.Limits
	// ProgressInterval is how often a running delivery's counters are
	// stored, so that GetDelivery shows them live.
	ProgressInterval time.Duration
}

// DefaultConfig answers the defaults: 16 MiB parts, 8 buffers (128 MiB),
// 4 parts in flight per object.
func DefaultConfig() Config {
	return Config{
		PartSize:         multipart.DefaultPartSize,
		PartBuffers:      8,
		PartConcurrency:  4,
		Ingest:           arrowingest.DefaultLimits,
		ProgressInterval: time.Second,
	}
}

// AddFlags registers the delivery flags on fs (the AWS endpoints are
// registered by whoever owns them).
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.PartSize, "part-size", c.PartSize, "multipart part size in bytes (at least 5 MiB)")
	fs.IntVar(&c.PartBuffers, "part-buffers", c.PartBuffers, "part buffers shared by all deliveries: their number times --part-size bounds upload memory")
	fs.IntVar(&c.PartConcurrency, "part-concurrency", c.PartConcurrency, "parts of one object uploaded at once")
	fs.Int64Var(&c.Ingest.MaxBatchBytes, "max-batch-bytes", c.Ingest.MaxBatchBytes, "largest Arrow record batch body accepted, also once decompressed")
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
	return c.AWS.CheckS3Checksums()
}
