package staging

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sluicehq/sluice/pkg/multipart"
)

// DefaultSegmentBytes is how much input one staged object holds at most:
// with its trailer, one part of S3's smallest size, put in one request.
const DefaultSegmentBytes = multipart.MinPartSize - segmentTrailer

// segmentTrailer ends every segment: input length and CRC32C.
const segmentTrailer = 8

// S3 stages streams in a bucket of Sluice's own (never a customer's), for
// services that run on several machines or keep no local disk. A stream
// is a run of segment objects `{prefix}{id}/{start}` (the input offset
// where each begins, zero-padded so that names sort in stream order),
// each its input followed by a trailer of its length and CRC32C, written
// with the part writer from a pool of its own (never the deliveries':
// a staged segment holds its buffer until it fills, and sharing would let
// deliveries wait on each other). A segment is stored whole or not at all,
// so a crash loses at most the one being written: the stream holds those
// before it.
type S3 struct {
	client  *s3.Client
	bucket  string
	prefix  string
	pool    *multipart.Pool
	segment int64
	max     int64
	used    atomic.Int64
}

// NewS3 answers a store under prefix in bucket, counting what is there,
// that refuses new streams once it takes max bytes (0: no cap).
//
// pool must be the store's own: NewS3Pool makes one.
func NewS3(ctx context.Context, client *s3.Client, bucket, prefix string, pool *multipart.Pool, max int64) (*S3, error) {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	s := &S3{client: client, bucket: bucket, prefix: prefix, pool: pool, segment: DefaultSegmentBytes, max: max}
	objs, err := s.list(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("staging bucket %s: %w", bucket, err)
	}
	for _, o := range objs {
		s.used.Add(aws.ToInt64(o.Size))
	}
	return s, nil
}

// NewS3Pool answers a pool for an S3 store: buffers of one segment, n of
// them (as many streams stage at once; more wait).
func NewS3Pool(n int) (*multipart.Pool, error) { return multipart.NewPool(n, multipart.MinPartSize) }

func (s *S3) list(ctx context.Context, prefix string) ([]types.Object, error) {
	var out []types.Object
	in := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)}
	for {
		page, err := s.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Contents...)
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.ContinuationToken = page.NextContinuationToken
	}
}

// segment is one staged object: the input it holds.
type segment struct {
	key           string
	start, length int64
	size          int64
}

// marker is the empty object that says a stream exists, segments or not.
const marker = "stream"

// segments answers a stream's segments in order, and the input they hold
// from the start without a gap; ErrNotFound when there is no stream.
func (s *S3) segments(ctx context.Context, id string) ([]segment, int64, error) {
	if !idPattern.MatchString(id) {
		return nil, 0, fmt.Errorf("staging: bad stream id %q", id)
	}
	objs, err := s.list(ctx, s.prefix+id+"/")
	if err != nil {
		return nil, 0, fmt.Errorf("staging: %w", err)
	}
	if len(objs) == 0 {
		return nil, 0, ErrNotFound
	}
	var segs []segment
	for _, o := range objs {
		key := aws.ToString(o.Key)
		start, err := strconv.ParseInt(strings.TrimPrefix(key, s.prefix+id+"/"), 10, 64)
		size := aws.ToInt64(o.Size)
		if err != nil || size < segmentTrailer {
			continue // not a segment of ours
		}
		segs = append(segs, segment{key: key, start: start, length: size - segmentTrailer, size: size})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].start < segs[j].start })
	var held int64
	for i, sg := range segs {
		if sg.start != held {
			return segs[:i], held, nil // a gap: what follows is not reachable
		}
		held += sg.length
	}
	return segs, held, nil
}

// Used implements Store.
func (s *S3) Used() int64 { return s.used.Load() }

// Create implements Store.
func (s *S3) Create(ctx context.Context, id string) (Writer, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("staging: bad stream id %q", id)
	}
	if s.max > 0 && s.used.Load() >= s.max {
		return nil, fmt.Errorf("%w: %d of %d bytes used", ErrFull, s.used.Load(), s.max)
	}
	if err := s.Delete(ctx, id); err != nil {
		return nil, err
	}
	if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + id + "/" + marker), Body: strings.NewReader("")}); err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	return &s3Writer{s: s, ctx: ctx, id: id}, nil
}

// Append implements Store.
func (s *S3) Append(ctx context.Context, id string) (Writer, int64, error) {
	_, held, err := s.segments(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	return &s3Writer{s: s, ctx: ctx, id: id, staged: held}, held, nil
}

// Size implements Store.
func (s *S3) Size(ctx context.Context, id string) (int64, error) {
	_, held, err := s.segments(ctx, id)
	return held, err
}

// Open implements Store.
func (s *S3) Open(ctx context.Context, id string) (io.ReadCloser, error) {
	segs, _, err := s.segments(ctx, id)
	if err != nil {
		return nil, err
	}
	return &s3Reader{s: s, ctx: ctx, segs: segs}, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("staging: bad stream id %q", id)
	}
	objs, err := s.list(ctx, s.prefix+id+"/")
	if err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	for _, o := range objs {
		if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: o.Key}); err != nil {
			return fmt.Errorf("staging: %w", err)
		}
		s.used.Add(-aws.ToInt64(o.Size))
	}
	return nil
}

// s3Writer streams input into the segment being written, which ends with
// a trailer (input length and CRC32C), and stores it whole when it fills,
// on Flush and on Close.
type s3Writer struct {
	s      *S3
	ctx    context.Context
	id     string
	up     *multipart.Upload
	crc    hash.Hash32
	input  int64 // input bytes in the open segment
	staged int64 // input bytes in stored segments
	err    error
}

func (w *s3Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	if w.s.max > 0 && w.s.used.Load()+int64(n) > w.s.max {
		w.err = fmt.Errorf("%w: %d of %d bytes used", ErrFull, w.s.used.Load(), w.s.max)
		return 0, w.err
	}
	for len(p) > 0 {
		if w.up == nil {
			key := fmt.Sprintf("%s%s/%020d", w.s.prefix, w.id, w.staged)
			w.up, w.crc = multipart.New(w.ctx, w.s.client, w.s.pool, multipart.Object{Bucket: w.s.bucket, Key: key}, 2), crc32.New(castagnoli)
		}
		k := min(int64(len(p)), w.s.segment-w.input)
		if _, err := w.up.Write(p[:k]); err != nil {
			w.up.Abort()
			w.up, w.err = nil, fmt.Errorf("staging: %w", err)
			return 0, w.err
		}
		w.crc.Write(p[:k])
		w.input += k
		p = p[k:]
		if w.input >= w.s.segment {
			if err := w.Flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// Flush stores the open segment, so that everything written is held.
func (w *s3Writer) Flush() error {
	if w.err != nil || w.up == nil {
		return w.err
	}
	var trailer [segmentTrailer]byte
	binary.LittleEndian.PutUint32(trailer[:], uint32(w.input))
	binary.LittleEndian.PutUint32(trailer[4:], w.crc.Sum32())
	if _, err := w.up.Write(trailer[:]); err != nil {
		w.up.Abort()
		w.up, w.err = nil, fmt.Errorf("staging: %w", err)
		return w.err
	}
	if _, err := w.up.Close(); err != nil {
		w.up, w.err = nil, fmt.Errorf("staging: %w", err)
		return w.err
	}
	w.s.used.Add(w.input + segmentTrailer)
	w.staged += w.input
	w.up, w.input = nil, 0
	return nil
}

func (w *s3Writer) Staged() int64 { return w.staged }

func (w *s3Writer) Close() error { return w.Flush() }

func (w *s3Writer) Discard() error {
	if w.up != nil {
		w.up.Abort()
		w.staged += w.input
		w.up, w.input = nil, 0
	}
	return nil
}

// s3Reader reads a stream's segments in order, verifying each against its
// trailer before handing any of it on.
type s3Reader struct {
	s    *S3
	ctx  context.Context
	segs []segment
	buf  []byte
	off  int64 // input offset of buf's start
}

func (r *s3Reader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if len(r.segs) == 0 {
			return 0, io.EOF
		}
		sg := r.segs[0]
		r.segs = r.segs[1:]
		if err := r.load(sg); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.off += int64(n)
	return n, nil
}

func (r *s3Reader) load(sg segment) error {
	if sg.size > r.s.segment+segmentTrailer {
		return &CorruptError{Offset: sg.start, Reason: fmt.Sprintf("a segment of %d bytes is over the segment size", sg.size)}
	}
	out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{Bucket: aws.String(r.s.bucket), Key: aws.String(sg.key)})
	if err != nil {
		return fmt.Errorf("staging: read %s: %w", sg.key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, r.s.segment+segmentTrailer+1))
	if err != nil {
		return fmt.Errorf("staging: read %s: %w", sg.key, err)
	}
	if len(b) < segmentTrailer {
		return &CorruptError{Offset: sg.start, Reason: "a segment is shorter than its trailer"}
	}
	body, trailer := b[:len(b)-segmentTrailer], b[len(b)-segmentTrailer:]
	if int(binary.LittleEndian.Uint32(trailer)) != len(body) || crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(trailer[4:]) {
		return &CorruptError{Offset: sg.start, Reason: "a segment's CRC32C or length does not match its bytes"}
	}
	r.buf = body
	return nil
}

func (r *s3Reader) Close() error { return nil }
