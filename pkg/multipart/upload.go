package multipart

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// tracer makes the spans of parts and completions, from the global
// provider when asked (tests and processes install theirs first).
func tracer() trace.Tracer { return otel.Tracer("github.com/sluicehq/sluice/pkg/multipart") }

// partDuration records how long each part took to land, attempts
// included; made on the global meter provider when asked (the SDK hands
// back the same instrument each time).
func partDuration() metric.Float64Histogram {
	h, _ := otel.Meter("github.com/sluicehq/sluice/pkg/multipart").Float64Histogram("sluice.upload.part.duration",
		metric.WithUnit("s"), metric.WithDescription("Time for one multipart part (or single-request object) to land in S3, retries included, by outcome."),
		metric.WithExplicitBucketBoundaries(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
	return h
}

// attempts answers how many times the SDK sent a request (1 without retries).
func attempts(md middleware.Metadata) int {
	if r, ok := retry.GetAttemptResults(md); ok && len(r.Results) > 0 {
		return len(r.Results)
	}
	return 1
}

// castagnoli is the CRC32C table S3's checksums use.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaxParts is S3's limit on the parts of one object.
const MaxParts = 10000

// Object says where an upload goes and the settings S3 applies to it.
type Object struct {
	Bucket, Key string
	// ServerSideEncryption, SSEKMSKeyID, StorageClass, ACL and Tagging (URL
	// query form) are set on the object; ExpectedBucketOwner on every
	// request, so a bucket taken over by another account is refused.
	ServerSideEncryption types.ServerSideEncryption
	SSEKMSKeyID          string
	StorageClass         types.StorageClass
	ACL                  types.ObjectCannedACL
	Tagging              string
	ExpectedBucketOwner  string
	// NoChecksums sends no checksum headers, for S3-compatible stores that
	// refuse them; the object's CRC32C is still computed and answered.
	NoChecksums bool
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// Result is what landed.
type Result struct {
	Key string
	// Bytes in the object and the parts it was sent in (1 for a PutObject).
	Bytes int64
	Parts int
	// CRC32C of the whole object, base64 as S3 answers it.
	CRC32C string
}

// Upload streams one object: Write its bytes, then Close to complete it,
// or Abort to leave nothing behind.
type Upload struct {
	// OnPart, when set before the first Write, is called with the size of
	// each part once S3 has it (and of the object put in one request),
	// from the goroutine that sent it.
	OnPart func(bytes int)
	// OnReuse, when set, is called for each part kept from an interrupted
	// upload (ResumeFrom) instead of being sent again.
	OnReuse func(number int32)
	// OnCreate, when set, is called with the upload id once the multipart
	// upload exists and before any part is sent, so that the caller can
	// record it: an upload a crash interrupts can then be found and
	// aborted. An error aborts the upload.
	OnCreate func(uploadID string) error
	// Owner, when set before the first Write, names whose share of the
	// pool the upload's buffers count against (a tenant): no owner holds
	// more than half the pool.
	Owner string
	// Lazy, when set before the first Write, holds the object's first
	// bytes in the upload's own memory until they pass one buffer: an
	// object smaller than that goes up in one request without waiting for
	// the pool, so that many small objects finishing at once (a
	// partitioned output's) do not queue behind the tenant's share of it.
	// Its caller bounds how many such uploads exist.
	Lazy bool
	// LazyBytes, with Lazy, bounds the bytes held that way (one buffer's
	// size when zero or larger): a large object then moves into buffers
	// early, copied once while small.
	LazyBytes int

	client      *s3.Client
	pool        *Pool
	obj         Object
	concurrency int

	ctx    context.Context
	cancel context.CancelFunc

	cur      [][]byte // buffers of the part being filled; nil until its first byte
	curLen   int      // bytes in the part being filled
	curCap   int      // bytes it holds when full
	whole    hash.Hash32
	bytes    int64
	next     int32 // number of the next part
	uploadID string

	stored map[int32]types.Part // parts of a resumed upload, by number

	// wmu is held by Write, Close and Abort, and tried by Park: a writer
	// that stalls gives its part's buffers back in between.
	wmu sync.Mutex
	// parked holds the bytes of the part being filled while its buffers
	// are back in the pool; unpark gives back what park took.
	parked []byte
	unpark func(int64)
	// heldSize is the size of the pooled buffer parked came from; 0: not
	// pooled.
	heldSize int

	slots chan struct{} // parts in flight
	wg    sync.WaitGroup
	mu    sync.Mutex
	done  []types.CompletedPart
	err   error
}

// New answers an upload of obj through client, taking part buffers from
// pool and sending up to concurrency parts at once. Nothing is sent until
// a part fills or Close.
func New(ctx context.Context, client *s3.Client, pool *Pool, obj Object, concurrency int) *Upload {
	ctx, cancel := context.WithCancel(ctx)
	return &Upload{
		client: client, pool: pool, obj: obj, concurrency: max(1, concurrency),
		ctx: ctx, cancel: cancel, whole: crc32.New(castagnoli), next: 1,
		slots: make(chan struct{}, max(1, concurrency)),
	}
}

// ResumeFrom continues an upload that a crash interrupted, before the first
// Write: the same bytes are written again, and each part S3 already holds
// with the same number, size and CRC32C is kept instead of sent (ListParts
// answers them); any other part is sent as usual. The output must be
// regenerated byte for byte for parts to match, which Sluice's are (the
// part schedule depends only on the part number).
func (u *Upload) ResumeFrom(uploadID string, parts []types.Part) {
	u.uploadID = uploadID
	u.stored = map[int32]types.Part{}
	for _, p := range parts {
		u.stored[aws.ToInt32(p.PartNumber)] = p
	}
}

// Write adds p to the object, sending each part as it fills. It waits for
// free buffers when the pool has too few: that wait is the backpressure.
func (u *Upload) Write(p []byte) (int, error) {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	written := 0
	size := u.pool.size
	limit := size
	if u.LazyBytes > 0 {
		limit = min(limit, u.LazyBytes)
	}
	if u.Lazy && u.cur == nil && u.uploadID == "" && u.stored == nil && u.unpark == nil && len(u.parked)+len(p) < limit {
		if u.parked == nil && u.LazyBytes > 0 {
			u.parked, u.heldSize = heldBuffer(limit), limit
		}
		u.parked = append(grow(u.parked, len(p), limit), p...)
		u.whole.Write(p)
		u.bytes += int64(len(p))
		return len(p), nil
	}
	for len(p) > 0 {
		if err := u.failed(); err != nil {
			return written, err
		}
		if u.cur == nil {
			if err := u.take(); err != nil {
				return written, err
			}
		}
		i := u.curLen / size
		n := min(len(p), size-len(u.cur[i]))
		u.cur[i] = append(u.cur[i], p[:n]...)
		u.whole.Write(p[:n])
		u.bytes += int64(n)
		u.curLen += n
		written += n
		p = p[n:]
		if u.curLen == u.curCap {
			if err := u.send(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// grow answers b with room for n more bytes, at most doubling its
// capacity and not past limit unless n needs it. append's own growth
// (a quarter at a time for large slices) copied a part's bytes about
// twenty times over while it was held (#26: 0.46 s of an NDJSON
// delivery's 3.7 s of CPU).
func grow(b []byte, n, limit int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	c := min(max(2*cap(b), len(b)+n, 64<<10), max(limit, len(b)+n))
	out := make([]byte, len(b), c)
	copy(out, b)
	return out
}

// take takes the buffers of the part being filled, with the bytes it
// parked.
func (u *Upload) take() error {
	k := partBuffers(u.next, u.pool.Cap())
	bufs, err := u.pool.get(u.ctx, u.Owner, k)
	if err != nil {
		return fmt.Errorf("wait for part buffers: %w", err)
	}
	u.cur, u.curLen, u.curCap = bufs, 0, k*u.pool.size
	if u.parked != nil {
		for i, off := 0, 0; off < len(u.parked); i++ {
			n := min(u.pool.size, len(u.parked)-off)
			u.cur[i] = append(u.cur[i], u.parked[off:off+n]...)
			off += n
		}
		u.curLen = len(u.parked)
		u.dropParked()
	}
	return nil
}

// dropParked forgets the parked bytes, giving back what they took.
func (u *Upload) dropParked() {
	if u.parked != nil && u.unpark != nil {
		u.unpark(int64(len(u.parked)))
	}
	if u.heldSize > 0 {
		recycle(u.parked, u.heldSize)
	}
	u.parked, u.unpark, u.heldSize = nil, nil, 0
}

// heldBuffers recycles, by size, the memory small objects are held in
// (LazyBytes each): a fresh allocation per object, zeroed and faulted in,
// cost more than filling it (6 % of the delivery service's CPU with 16
// small deliveries at once).
var heldBuffers sync.Map // int -> *sync.Pool of *[]byte

func heldBuffer(size int) []byte {
	p, _ := heldBuffers.LoadOrStore(size, &sync.Pool{})
	if b, ok := p.(*sync.Pool).Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, size)
}

func recycle(b []byte, size int) {
	if cap(b) != size {
		return // grown past it, or parked by Park: not the pool's
	}
	p, _ := heldBuffers.LoadOrStore(size, &sync.Pool{})
	p.(*sync.Pool).Put(&b)
}

// Park gives the buffers of the part being filled back to the pool,
// keeping its bytes aside, when no Write runs and take allows as many
// bytes (give gets them back): for a writer whose input stalled, so that
// its buffers serve other uploads meanwhile. The next Write or Close takes
// buffers again. It reports whether it parked.
func (u *Upload) Park(take func(int64) bool, give func(int64)) bool {
	if !u.wmu.TryLock() {
		return false // a Write runs: not stalled
	}
	defer u.wmu.Unlock()
	if u.cur == nil || u.failed() != nil {
		return false
	}
	if u.curLen > 0 && take != nil && !take(int64(u.curLen)) {
		return false
	}
	parked := make([]byte, 0, u.curLen)
	for _, b := range u.cur {
		parked = append(parked, b...)
	}
	u.release()
	if len(parked) > 0 {
		u.parked, u.unpark = parked, give
	}
	return true
}

// partsPerStep is how many parts have one size before parts double.
var partsPerStep int32 = 2000

// partBuffers answers how many pool buffers part n spans: one for the
// first 2,000 parts, then twice as many every 2,000 parts, at most half
// the pool. With 16 MiB buffers and a pool of 8, 10,000 parts carry 470
// GiB; a larger pool carries more. The schedule depends on the part number
// alone, so that a recorded upload can be resumed part for part.
func partBuffers(n int32, poolCap int) int {
	k := 1 << ((n - 1) / partsPerStep)
	return min(k, max(1, poolCap/2))
}

// release returns the part being filled to the pool.
func (u *Upload) release() {
	if u.cur != nil {
		u.pool.put(u.Owner, u.cur...)
		u.cur, u.curLen = nil, 0
	}
}

func (u *Upload) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *Upload) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
		u.cancel()
	}
	u.mu.Unlock()
}

func crc32cBase64(sum uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], sum)
	return base64.StdEncoding.EncodeToString(b[:])
}

// send uploads the part being filled as the next part, starting the
// multipart upload with the first one.
func (u *Upload) send() error {
	if u.uploadID == "" {
		in := &s3.CreateMultipartUploadInput{
			Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key),
			ChecksumAlgorithm:    types.ChecksumAlgorithmCrc32c,
			ChecksumType:         types.ChecksumTypeFullObject,
			ServerSideEncryption: u.obj.ServerSideEncryption, SSEKMSKeyId: optional(u.obj.SSEKMSKeyID),
			StorageClass: u.obj.StorageClass, ACL: u.obj.ACL, Tagging: optional(u.obj.Tagging),
			ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
		}
		if u.obj.NoChecksums {
			in.ChecksumAlgorithm, in.ChecksumType = "", ""
		}
		out, err := u.client.CreateMultipartUpload(u.ctx, in)
		if err != nil {
			u.fail(fmt.Errorf("start upload of %s: %w", u.obj.Key, err))
			u.release()
			return u.failed()
		}
		u.uploadID = aws.ToString(out.UploadId)
		if u.OnCreate != nil {
			if err := u.OnCreate(u.uploadID); err != nil {
				u.fail(fmt.Errorf("record upload of %s: %w", u.obj.Key, err))
				u.release()
				return u.failed()
			}
		}
	}
	if u.next > MaxParts {
		err := fmt.Errorf("%s needs more than %d parts: configure a larger part size or more part buffers", u.obj.Key, MaxParts)
		u.fail(err)
		u.release()
		return err
	}
	// Buffers the part did not reach go back at once.
	used := (u.curLen + u.pool.size - 1) / u.pool.size
	u.pool.put(u.Owner, u.cur[used:]...)
	bufs, size, number := u.cur[:used], u.curLen, u.next
	u.cur, u.curLen, u.next = nil, 0, u.next+1
	select {
	case u.slots <- struct{}{}:
	case <-u.ctx.Done():
		u.pool.put(u.Owner, bufs...)
		return u.failed()
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-u.slots }()
		defer u.pool.put(u.Owner, bufs...)
		crc := crc32.New(castagnoli)
		for _, b := range bufs {
			crc.Write(b)
		}
		sum := crc32cBase64(crc.Sum32())
		if p, ok := u.stored[number]; ok && aws.ToInt64(p.Size) == int64(size) && aws.ToString(p.ChecksumCRC32C) == sum {
			u.mu.Lock()
			u.done = append(u.done, types.CompletedPart{PartNumber: aws.Int32(number), ETag: p.ETag, ChecksumCRC32C: aws.String(sum)})
			u.mu.Unlock()
			if u.OnReuse != nil {
				u.OnReuse(number)
			}
			return
		}
		// The body can be rewound, so the SDK may retry the part.
		in := &s3.UploadPartInput{
			Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key), UploadId: aws.String(u.uploadID),
			PartNumber: aws.Int32(number), Body: newPartBody(bufs), ContentLength: aws.Int64(int64(size)),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumCRC32C: aws.String(sum),
			ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
		}
		if u.obj.NoChecksums {
			in.ChecksumAlgorithm, in.ChecksumCRC32C = "", nil
		}
		ctx, span := tracer().Start(u.ctx, "upload part", trace.WithAttributes(
			attribute.Int("sluice.part.number", int(number)), attribute.Int("sluice.part.bytes", size)))
		began := time.Now()
		out, err := u.client.UploadPart(ctx, in)
		partDuration().Record(context.WithoutCancel(ctx), time.Since(began).Seconds(), metric.WithAttributes(attribute.Bool("sluice.landed", err == nil)))
		if err != nil {
			span.SetStatus(codes.Error, "the part did not land")
			span.End()
			u.fail(fmt.Errorf("part %d: %w", number, err))
			return
		}
		span.SetAttributes(attribute.Int("sluice.part.attempts", attempts(out.ResultMetadata)))
		span.End()
		u.mu.Lock()
		part := types.CompletedPart{PartNumber: aws.Int32(number), ETag: out.ETag, ChecksumCRC32C: aws.String(sum)}
		if u.obj.NoChecksums {
			part.ChecksumCRC32C = nil
		}
		u.done = append(u.done, part)
		u.mu.Unlock()
		if u.OnPart != nil {
			u.OnPart(size)
		}
	}()
	return nil
}

// Close sends what is left and completes the object with its whole CRC32C,
// or puts it in one request when it never filled a part. On failure the
// upload is aborted.
func (u *Upload) Close() (Result, error) {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	res := Result{Key: u.obj.Key, Bytes: u.bytes, CRC32C: crc32cBase64(u.whole.Sum32())}
	err := u.failed()
	if err == nil && u.parked != nil && u.uploadID == "" {
		// A parked object smaller than a part goes up from its parked
		// bytes: no pool buffer to wait for (many small partition files
		// finish at once).
		return u.putWhole(res)
	}
	if err == nil && u.parked != nil {
		err = u.take()
	}
	if err != nil {
		u.abort()
		return res, err
	}
	if u.uploadID == "" {
		return u.putWhole(res)
	}
	if u.curLen > 0 {
		if err := u.send(); err != nil {
			u.abort()
			return res, err
		}
	} else {
		u.release()
	}
	u.wg.Wait()
	if err := u.failed(); err != nil {
		u.abort()
		return res, err
	}
	sort.Slice(u.done, func(i, j int) bool { return *u.done[i].PartNumber < *u.done[j].PartNumber })
	complete := &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key), UploadId: aws.String(u.uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: u.done},
		ChecksumCRC32C:  aws.String(res.CRC32C), ChecksumType: types.ChecksumTypeFullObject,
		ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
	}
	if u.obj.NoChecksums {
		complete.ChecksumCRC32C, complete.ChecksumType = nil, ""
	}
	ctx, span := tracer().Start(u.ctx, "complete upload", trace.WithAttributes(attribute.Int("sluice.parts", len(u.done)), attribute.Int64("sluice.bytes", u.bytes)))
	out, err := u.client.CompleteMultipartUpload(ctx, complete)
	if err != nil {
		span.SetStatus(codes.Error, "the upload did not complete")
		span.End()
		u.abort()
		return res, fmt.Errorf("complete %s: %w", u.obj.Key, err)
	}
	span.SetAttributes(attribute.Int("sluice.attempts", attempts(out.ResultMetadata)))
	span.End()
	u.cancel()
	u.uploadID = "" // completed: nothing left to abort
	res.Parts = len(u.done)
	return res, nil
}

// putWhole sends an object smaller than one part in one request.
func (u *Upload) putWhole(res Result) (Result, error) {
	defer u.cancel()
	landed := false // S3 read the whole body and took it
	var body []byte
	switch {
	case u.cur != nil:
		body = u.cur[0] // smaller than a part: it fits the first buffer
	case u.parked != nil:
		body = u.parked
		defer func() {
			if !landed {
				u.heldSize = 0 // the transport may still read it: not recycled
			}
			u.dropParked()
		}()
	}
	put := &s3.PutObjectInput{
		Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumCRC32C: aws.String(res.CRC32C),
		ServerSideEncryption: u.obj.ServerSideEncryption, SSEKMSKeyId: optional(u.obj.SSEKMSKeyID),
		StorageClass: u.obj.StorageClass, ACL: u.obj.ACL, Tagging: optional(u.obj.Tagging),
		ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
	}
	if u.obj.NoChecksums {
		put.ChecksumAlgorithm, put.ChecksumCRC32C = "", nil
	}
	ctx, span := tracer().Start(u.ctx, "put object", trace.WithAttributes(attribute.Int("sluice.bytes", len(body))))
	began := time.Now()
	out, err := u.client.PutObject(ctx, put)
	partDuration().Record(context.WithoutCancel(ctx), time.Since(began).Seconds(), metric.WithAttributes(attribute.Bool("sluice.landed", err == nil)))
	u.release()
	if err != nil {
		span.SetStatus(codes.Error, "the object did not land")
		span.End()
		return res, fmt.Errorf("put %s: %w", u.obj.Key, err)
	}
	landed = true
	span.SetAttributes(attribute.Int("sluice.attempts", attempts(out.ResultMetadata)))
	span.End()
	if u.OnPart != nil {
		u.OnPart(len(body))
	}
	res.Parts = 1
	return res, nil
}

// Abort stops sending, returns the buffers, and aborts the multipart
// upload so that no part is left behind. It answers the abort's error.
func (u *Upload) Abort() error {
	u.fail(errors.New("upload aborted")) // a Write waiting for buffers or a slot returns
	u.wmu.Lock()
	defer u.wmu.Unlock()
	return u.abort()
}

// Detach stops the upload without aborting it: parts being sent finish or
// fail, buffers go back to the pool, and the multipart upload S3 holds
// stays, with the parts it stored, for whoever continues or aborts it by
// its id (ResumeFrom; a recorded take-back).
func (u *Upload) Detach() {
	u.fail(errors.New("upload detached")) // a Write waiting for buffers or a slot returns
	u.wmu.Lock()
	defer u.wmu.Unlock()
	u.wg.Wait()
	u.release()
	u.dropParked()
}

// abort is Abort with wmu held.
func (u *Upload) abort() error {
	u.fail(errors.New("upload aborted"))
	u.wg.Wait()
	u.release()
	u.dropParked()
	if u.uploadID == "" {
		return nil
	}
	// The upload's own context is cancelled: abort on a fresh one.
	_, err := u.client.AbortMultipartUpload(context.WithoutCancel(u.ctx), &s3.AbortMultipartUploadInput{
		Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key), UploadId: aws.String(u.uploadID),
		ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
	})
	u.uploadID = ""
	if err != nil {
		return fmt.Errorf("abort upload of %s: %w", u.obj.Key, err)
	}
	return nil
}

// partBody reads a part held in several buffers, and can be rewound so
// that the SDK may retry it.
type partBody struct {
	bufs [][]byte
	size int64
	off  int64
}

func newPartBody(bufs [][]byte) io.ReadSeeker {
	if len(bufs) == 1 {
		return bytes.NewReader(bufs[0])
	}
	b := &partBody{bufs: bufs}
	for _, x := range bufs {
		b.size += int64(len(x))
	}
	return b
}

func (b *partBody) Read(p []byte) (int, error) {
	if b.off >= b.size {
		return 0, io.EOF
	}
	n, off := 0, b.off
	for _, x := range b.bufs {
		if off >= int64(len(x)) {
			off -= int64(len(x))
			continue
		}
		c := copy(p[n:], x[off:])
		n += c
		off = 0
		if n == len(p) {
			break
		}
	}
	b.off += int64(n)
	return n, nil
}

func (b *partBody) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += b.off
	case io.SeekEnd:
		offset += b.size
	default:
		return 0, errors.New("multipart: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("multipart: negative position")
	}
	b.off = offset
	return offset, nil
}
