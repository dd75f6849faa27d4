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
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

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

	client      *s3.Client
	pool        *Pool
	obj         Object
	concurrency int

	ctx    context.Context
	cancel context.CancelFunc

	buf      []byte // the part being filled; nil until the first byte
	whole    hash.Hash32
	bytes    int64
	next     int32 // number of the next part
	uploadID string

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

// Write adds p to the object, sending each part as it fills. It waits for
// a free buffer when the pool is empty: that wait is the backpressure.
func (u *Upload) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if err := u.failed(); err != nil {
			return written, err
		}
		if u.buf == nil {
			b, err := u.pool.get(u.ctx)
			if err != nil {
				return written, fmt.Errorf("wait for a part buffer: %w", err)
			}
			u.buf = b
		}
		n := min(len(p), u.pool.size-len(u.buf))
		u.buf = append(u.buf, p[:n]...)
		u.whole.Write(p[:n])
		u.bytes += int64(n)
		written += n
		p = p[n:]
		if len(u.buf) == u.pool.size {
			if err := u.send(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
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

// send uploads the full buffer as the next part, starting the multipart
// upload with the first one.
func (u *Upload) send() error {
	if u.uploadID == "" {
		out, err := u.client.CreateMultipartUpload(u.ctx, &s3.CreateMultipartUploadInput{
			Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key),
			ChecksumAlgorithm:    types.ChecksumAlgorithmCrc32c,
			ChecksumType:         types.ChecksumTypeFullObject,
			ServerSideEncryption: u.obj.ServerSideEncryption, SSEKMSKeyId: optional(u.obj.SSEKMSKeyID),
			StorageClass: u.obj.StorageClass, ACL: u.obj.ACL, Tagging: optional(u.obj.Tagging),
			ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
		})
		if err != nil {
			u.fail(fmt.Errorf("start upload of %s: %w", u.obj.Key, err))
			u.pool.put(u.buf)
			u.buf = nil
			return u.failed()
		}
		u.uploadID = aws.ToString(out.UploadId)
	}
	if u.next > MaxParts {
		err := fmt.Errorf("%s needs more than %d parts of %d bytes: configure a larger part size", u.obj.Key, MaxParts, u.pool.size)
		u.fail(err)
		return err
	}
	buf, number := u.buf, u.next
	u.buf, u.next = nil, u.next+1
	select {
	case u.slots <- struct{}{}:
	case <-u.ctx.Done():
		u.pool.put(buf)
		return u.failed()
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer func() { <-u.slots }()
		defer u.pool.put(buf)
		sum := crc32cBase64(crc32.Checksum(buf, castagnoli))
		// A bytes.Reader can be rewound, so the SDK may retry the part.
		out, err := u.client.UploadPart(u.ctx, &s3.UploadPartInput{
			Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key), UploadId: aws.String(u.uploadID),
			PartNumber: aws.Int32(number), Body: bytes.NewReader(buf), ContentLength: aws.Int64(int64(len(buf))),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumCRC32C: aws.String(sum),
			ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
		})
		if err != nil {
			u.fail(fmt.Errorf("part %d: %w", number, err))
			return
		}
		u.mu.Lock()
		u.done = append(u.done, types.CompletedPart{PartNumber: aws.Int32(number), ETag: out.ETag, ChecksumCRC32C: aws.String(sum)})
		u.mu.Unlock()
		if u.OnPart != nil {
			u.OnPart(len(buf))
		}
	}()
	return nil
}

// Close sends what is left and completes the object with its whole CRC32C,
// or puts it in one request when it never filled a part. On failure the
// upload is aborted.
func (u *Upload) Close() (Result, error) {
	res := Result{Key: u.obj.Key, Bytes: u.bytes, CRC32C: crc32cBase64(u.whole.Sum32())}
	if err := u.failed(); err != nil {
		u.Abort()
		return res, err
	}
	if u.uploadID == "" {
		return u.putWhole(res)
	}
	if len(u.buf) > 0 {
		if err := u.send(); err != nil {
			u.Abort()
			return res, err
		}
	} else if u.buf != nil {
		u.pool.put(u.buf)
		u.buf = nil
	}
	u.wg.Wait()
	if err := u.failed(); err != nil {
		u.Abort()
		return res, err
	}
	sort.Slice(u.done, func(i, j int) bool { return *u.done[i].PartNumber < *u.done[j].PartNumber })
	_, err := u.client.CompleteMultipartUpload(u.ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key), UploadId: aws.String(u.uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: u.done},
		ChecksumCRC32C:  aws.String(res.CRC32C), ChecksumType: types.ChecksumTypeFullObject,
		ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
	})
	if err != nil {
		u.Abort()
		return res, fmt.Errorf("complete %s: %w", u.obj.Key, err)
	}
	u.cancel()
	u.uploadID = "" // completed: nothing left to abort
	res.Parts = len(u.done)
	return res, nil
}

// putWhole sends an object smaller than one part in one request.
func (u *Upload) putWhole(res Result) (Result, error) {
	defer u.cancel()
	body := u.buf
	if body == nil {
		body = []byte{}
	}
	_, err := u.client.PutObject(u.ctx, &s3.PutObjectInput{
		Bucket: aws.String(u.obj.Bucket), Key: aws.String(u.obj.Key),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumCRC32C: aws.String(res.CRC32C),
		ServerSideEncryption: u.obj.ServerSideEncryption, SSEKMSKeyId: optional(u.obj.SSEKMSKeyID),
		StorageClass: u.obj.StorageClass, ACL: u.obj.ACL, Tagging: optional(u.obj.Tagging),
		ExpectedBucketOwner: optional(u.obj.ExpectedBucketOwner),
	})
	if u.buf != nil {
		u.pool.put(u.buf)
		u.buf = nil
	}
	if err != nil {
		return res, fmt.Errorf("put %s: %w", u.obj.Key, err)
	}
	if u.OnPart != nil {
		u.OnPart(len(body))
	}
	res.Parts = 1
	return res, nil
}

// Abort stops sending, returns the buffers, and aborts the multipart
// upload so that no part is left behind. It answers the abort's error.
func (u *Upload) Abort() error {
	u.fail(errors.New("upload aborted"))
	u.wg.Wait()
	if u.buf != nil {
		u.pool.put(u.buf)
		u.buf = nil
	}
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
