package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/multipart"
	"github.com/sluicehq/sluice/pkg/outputspec"
	"github.com/sluicehq/sluice/services/delivery/store"
)

// landed is what an object that landed holds.
type landed struct {
	bytes  int64
	parts  int
	crc32c string // base64, as S3 answers it
	sha256 string // hex
}

// objectSink is where a delivery's objects go: fileset's Sink, plus what
// landed and a way to take it all back.
type objectSink interface {
	fileset.Sink
	// landed answers what landed under key.
	landed(key string) landed
	// remove deletes every object that landed, for a delivery that failed.
	remove(ctx context.Context) error
}

// s3Sink writes each object as a multipart upload through the shared pool
// of part buffers, with the destination's object settings.
type s3Sink struct {
	ctx         context.Context
	client      *s3.Client
	pool        *multipart.Pool
	concurrency int
	dest        *destinationv1.Destination
	bucket      string
	onPart      func(bytes int)
	checksums   bool
	// record, when set, records each object and its upload before any
	// byte of it is sent.
	record func(store.Write) error
	// resume holds the interrupted uploads a rerun continues, by key.
	resume map[string]resumable

	// owner is whose share of the part-buffer pool the uploads take (the
	// delivery's tenant).
	owner string
	// open are the uploads being written, for park.
	open map[*s3Object]bool

	mu   sync.Mutex
	done map[string]landed
	keys []string // in the order they landed
}

func newS3Sink(ctx context.Context, client *s3.Client, pool *multipart.Pool, concurrency int, dest *destinationv1.Destination, bucket string, onPart func(int), checksums bool) *s3Sink {
	return &s3Sink{ctx: ctx, client: client, pool: pool, concurrency: concurrency, dest: dest, bucket: bucket, onPart: onPart, checksums: checksums, done: map[string]landed{}}
}

func (s *s3Sink) Create(key string) (fileset.Object, error) {
	if s.record != nil {
		if err := s.record(store.Write{Bucket: s.bucket, Key: key}); err != nil {
			return nil, err
		}
	}
	obj := outputspec.Object(s.dest, s.bucket, key)
	obj.NoChecksums = !s.checksums
	u := multipart.New(s.ctx, s.client, s.pool, obj, s.concurrency)
	u.OnPart, u.Owner = s.onPart, s.owner
	o := &s3Object{sink: s, up: u, key: key, sum: sha256.New()}
	s.mu.Lock()
	if s.open == nil {
		s.open = map[*s3Object]bool{}
	}
	s.open[o] = true
	s.mu.Unlock()
	if r, ok := s.resume[key]; ok {
		u.ResumeFrom(r.uploadID, r.parts)
		u.OnReuse = func(int32) { o.reused.Add(1) }
		if s.record != nil {
			if err := s.record(store.Write{Bucket: s.bucket, Key: key, UploadID: r.uploadID}); err != nil {
				return nil, err
			}
		}
	}
	if s.record != nil {
		u.OnCreate = func(id string) error { return s.record(store.Write{Bucket: s.bucket, Key: key, UploadID: id}) }
	}
	return o, nil
}

func (s *s3Sink) landed(key string) landed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done[key]
}

func (s *s3Sink) remove(ctx context.Context) error {
	s.mu.Lock()
	keys := s.keys
	s.keys, s.done = nil, map[string]landed{}
	s.mu.Unlock()
	var errs []error
	for _, k := range keys {
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(k), ExpectedBucketOwner: optional(s.dest.GetExpectedBucketOwner()),
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

type s3Object struct {
	sink   *s3Sink
	up     *multipart.Upload
	key    string
	sum    hash.Hash
	reused atomic.Int64 // parts kept from an interrupted upload
}

func (o *s3Object) Write(p []byte) (int, error) {
	n, err := o.up.Write(p)
	o.sum.Write(p[:n])
	return n, err
}

func (o *s3Object) Close() error {
	o.sink.forget(o)
	res, err := o.up.Close()
	if err != nil {
		return err
	}
	if n := o.reused.Load(); n > 0 {
		logging.FromContext(o.sink.ctx).InfoContext(o.sink.ctx, "resumed an interrupted upload",
			slog.String("key", o.key), slog.Int64("parts_kept", n), slog.Int("parts", res.Parts))
	}
	o.sink.mu.Lock()
	o.sink.done[o.key] = landed{bytes: res.Bytes, parts: res.Parts, crc32c: res.CRC32C, sha256: hex.EncodeToString(o.sum.Sum(nil))}
	o.sink.keys = append(o.sink.keys, o.key)
	o.sink.mu.Unlock()
	return nil
}

func (o *s3Object) Abort() error {
	o.sink.forget(o)
	return o.up.Abort()
}

func (s *s3Sink) forget(o *s3Object) {
	s.mu.Lock()
	delete(s.open, o)
	s.mu.Unlock()
}

// park gives the part buffers of the uploads being written back to the
// pool, their bytes kept aside (take, give account for them): for a
// delivery whose caller stalled, so that the buffers serve others (#22).
func (s *s3Sink) park(take func(int64) bool, give func(int64)) {
	s.mu.Lock()
	open := make([]*s3Object, 0, len(s.open))
	for o := range s.open {
		open = append(open, o)
	}
	s.mu.Unlock()
	for _, o := range open {
		o.up.Park(take, give)
	}
}

// resumable is an interrupted multipart upload and the parts S3 holds.
type resumable struct {
	uploadID string
	parts    []types.Part
}
