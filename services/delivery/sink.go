package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"log/slog"
	"strings"
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
// landed. A failed attempt leaves what it wrote (each object recorded):
// the outcome takes it back, or keeps it for retry-task to continue.
type objectSink interface {
	fileset.Sink
	// landed answers what landed under key.
	landed(key string) landed
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
	// byte of it is sent; note, what landed, without waiting (recorder).
	record func(...store.Write) error
	note   func(store.Write)
	// ahead are keys recorded with the first object's record, for objects
	// written after every data file (the manifest, the success file). A
	// failed delivery's take-back then deletes them whether or not it got
	// to write them, as it does a data file's key: a success file left
	// beside data taken back would announce a set that is not there.
	ahead     []string
	aheadDone map[string]bool
	// flush commits what was noted.
	flush func() error
	// resume holds the interrupted uploads a rerun continues, by key.
	resume map[string]resumable
	// kept holds the objects an earlier run landed with the same settings
	// (fingerprint), by key: a rerun that continues keeps them rather than
	// writing them again.
	kept        map[string]*store.Landed
	fingerprint string
	// skipped counts the objects kept.
	skipped atomic.Int64

	// owner is whose share of the part-buffer pool the uploads take (the
	// delivery's tenant).
	owner string
	// lazy holds each object's first part in its own memory (see
	// multipart.Upload.Lazy).
	lazy bool
	// lazyBytes bounds what each object holds so (0: a part).
	lazyBytes int
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
	if k := s.kept[key]; k != nil && s.stillThere(key, k) {
		s.skipped.Add(1)
		return &keptObject{sink: s, key: key, was: *k}, nil
	}
	if err := s.recordAhead(key); err != nil {
		return nil, err
	}
	obj := outputspec.Object(s.dest, s.bucket, key)
	obj.NoChecksums = !s.checksums
	u := multipart.New(s.ctx, s.client, s.pool, obj, s.concurrency)
	u.OnPart, u.Owner, u.Lazy, u.LazyBytes = s.onPart, s.owner, s.lazy, s.lazyBytes
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

// recordAhead records that key is about to be written, with the keys
// written ahead (a small delivery's manifest and success file then cost
// no commit of their own), unless it was recorded so already.
func (s *s3Sink) recordAhead(key string) error {
	if s.record == nil {
		return nil
	}
	s.mu.Lock()
	already, ahead := s.aheadDone[key], s.ahead
	s.ahead = nil
	s.mu.Unlock()
	if already {
		return nil
	}
	ws := []store.Write{{Bucket: s.bucket, Key: key}}
	for _, k := range ahead {
		if k != key {
			ws = append(ws, store.Write{Bucket: s.bucket, Key: k})
		}
	}
	if err := s.record(ws...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aheadDone == nil {
		s.aheadDone = map[string]bool{}
	}
	for _, w := range ws[1:] {
		s.aheadDone[w.Key] = true
	}
	return nil
}

func (s *s3Sink) landed(key string) landed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done[key]
}

// stillThere asks S3 whether an object an earlier run landed is still
// there as it landed (its size, and its CRC32C when S3 keeps one).
func (s *s3Sink) stillThere(key string, k *store.Landed) bool {
	head, err := s.client.HeadObject(s.ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key),
		ExpectedBucketOwner: optional(s.dest.GetExpectedBucketOwner()), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil || aws.ToInt64(head.ContentLength) != k.Bytes {
		return false
	}
	// A multipart object's checksum is of its parts' checksums: compared
	// only when both are whole-object ones.
	if c := aws.ToString(head.ChecksumCRC32C); c != "" && k.CRC32C != "" && !strings.Contains(c, "-") && c != k.CRC32C {
		return false
	}
	return true
}

// keptObject is an object an earlier run landed: the bytes written to it
// again are only counted, and it is answered as it landed.
type keptObject struct {
	sink *s3Sink
	key  string
	was  store.Landed
}

func (o *keptObject) Write(p []byte) (int, error) { return len(p), nil }
func (o *keptObject) Abort() error                { return nil }
func (o *keptObject) Close() error {
	o.sink.mu.Lock()
	o.sink.done[o.key] = landed{bytes: o.was.Bytes, parts: o.was.Parts, crc32c: o.was.CRC32C, sha256: o.was.SHA256}
	o.sink.keys = append(o.sink.keys, o.key)
	o.sink.mu.Unlock()
	return nil
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
	l := landed{bytes: res.Bytes, parts: res.Parts, crc32c: res.CRC32C, sha256: hex.EncodeToString(o.sum.Sum(nil))}
	if o.sink.note != nil {
		// What landed is noted, for a retry of a later failure to keep.
		o.sink.note(store.Write{Bucket: o.sink.bucket, Key: o.key, Landed: &store.Landed{
			Bytes: l.bytes, Parts: l.parts, CRC32C: l.crc32c, SHA256: l.sha256, Fingerprint: o.sink.fingerprint}})
	}
	o.sink.mu.Lock()
	o.sink.done[o.key] = l
	o.sink.keys = append(o.sink.keys, o.key)
	o.sink.mu.Unlock()
	return nil
}

// Idle gives the part being filled back to the pool, its bytes kept
// aside until the next write: a partition file that waits for more rows
// holds no shared buffers.
func (o *s3Object) Idle() { o.up.Park(nil, nil) }

// Abort stops the object's upload and leaves what S3 holds of it: the
// upload is recorded, and the delivery's outcome takes it back or keeps
// it for a retry to continue.
func (o *s3Object) Abort() error {
	o.sink.forget(o)
	o.up.Detach()
	return nil
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

// recorder writes a delivery's records, committing those that arrive
// while a commit runs together in the next one (a group commit): many
// objects finishing at once cost a transaction per group rather than one
// each, and the store's single writer is not queued for. What landed is
// only noted: it rides with the next record, or with flush (a run that
// fails flushes, for a later run to keep what landed); a run that
// succeeds forgets its records without writing it.
type recorder struct {
	write func([]store.Write) error

	mu      sync.Mutex
	busy    bool
	pending []store.Write
	waiters []chan error
}

// record answers once ws are committed.
func (r *recorder) record(ws ...store.Write) error { return r.commit(ws) }

// note queues w for the next commit, without waiting for one.
func (r *recorder) note(w store.Write) {
	r.mu.Lock()
	r.pending = append(r.pending, w)
	r.mu.Unlock()
}

// flush answers once what was noted is committed.
func (r *recorder) flush() error { return r.commit(nil) }

func (r *recorder) commit(ws []store.Write) error {
	done := make(chan error, 1)
	r.mu.Lock()
	r.pending = append(r.pending, ws...)
	r.waiters = append(r.waiters, done)
	if r.busy {
		r.mu.Unlock()
		return <-done
	}
	// This caller commits, until nothing waits.
	r.busy = true
	for len(r.waiters) > 0 {
		batch, waiters := r.pending, r.waiters
		r.pending, r.waiters = nil, nil
		r.mu.Unlock()
		var err error
		if len(batch) > 0 {
			err = r.write(batch)
		}
		for _, c := range waiters {
			c <- err
		}
		r.mu.Lock()
	}
	r.busy = false
	r.mu.Unlock()
	return <-done
}
