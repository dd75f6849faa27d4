package delivery

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/awserror"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/lease"
	"github.com/sluicehq/sluice/pkg/logging"
	"github.com/sluicehq/sluice/pkg/outputspec"
	"github.com/sluicehq/sluice/pkg/resourcename"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/staging"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/services/delivery/store"
)

// stalledAfter is how long a running delivery may go without storing its
// progress (it does every ProgressInterval, and at least every heartbeat)
// before a second caller with its idempotency key stops waiting for it.
const (
	heartbeat    = 10 * time.Second
	stalledAfter = 6 * heartbeat
)

// checkStart validates the opening message.
func checkStart(start *deliveryv1.DeliveryStart) error {
	var v apierror.Violations
	if !validate.Present(&v, "start", start != nil) {
		return v.Err()
	}
	validate.Name(&v, "start.destination", start.GetDestination(), "destinations")
	validate.Text(&v, "start.idempotency_key", start.GetIdempotencyKey(), 128, false)
	if on := start.GetOutputName(); on != "" {
		if err := outputspec.CheckOutputName(on); err != nil {
			v.Add("start.output_name", "%v", err)
		}
	}
	if len(start.GetLabels()) > 32 {
		v.Add("start.labels", "must be at most 32; got %d", len(start.GetLabels()))
	}
	for k, val := range start.GetLabels() {
		if k == "" {
			v.Add("start.labels", "keys must not be empty")
		}
		validate.Text(&v, "start.labels["+k+"]", k, 63, false)
		validate.Text(&v, "start.labels["+k+"]", val, 256, false)
	}
	return v.Err()
}

// newID answers a delivery id that sorts by creation time, so that name
// order is time order: d20261125-101500-123-k3j9x2.
func newID(t time.Time) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[b[i]%32]
	}
	t = t.UTC()
	return fmt.Sprintf("d%s-%03d-%s", t.Format("20060102-150405"), t.Nanosecond()/1e6, b)
}

// source is where a delivery's Arrow IPC bytes come from: a Deliver stream
// or a Flight DoPut. It counts the bytes it reads into prog, and stages
// each message it receives before the pipeline sees it.
type source interface {
	io.Reader
	count(prog *progress)
	stage(w staging.Writer)
	// drop discards bytes received but not yet read: a retry reads them
	// back from staging.
	drop()
	// whole reports whether the caller's stream reached its end, so that
	// all of it is staged, whatever an attempt read of it.
	whole() bool
}

// streamBroke is a caller's stream that failed before its end: the caller
// went away or the network dropped, not the data's fault. With staging, the
// delivery waits to be resumed.
type streamBroke struct{ err error }

func (e *streamBroke) Error() string { return "the stream broke: " + e.err.Error() }
func (e *streamBroke) Unwrap() error { return e.err }

// stagingFailed is staging refusing or failing a write.
type stagingFailed struct{ err error }

func (e *stagingFailed) Error() string { return "stage the input: " + e.err.Error() }
func (e *stagingFailed) Unwrap() error { return e.err }

// staged writes b to w, when staging, and counts it.
func staged(w staging.Writer, prog *progress, b ...[]byte) error {
	if w == nil {
		return nil
	}
	for _, x := range b {
		if _, err := w.Write(x); err != nil {
			return &stagingFailed{err}
		}
	}
	prog.staged.Store(w.Staged())
	return nil
}

// recvReader reads the Arrow IPC bytes of a Deliver stream, one message at
// a time: while the pipeline does not read, Recv is not called and gRPC
// flow control holds the sender.
type recvReader struct {
	stream deliveryv1.DeliveryService_DeliverServer
	buf    []byte // what Read answers next, of chunk
	// chunk is the message being read, given back to the pool once read
	// unless a body was sliced from it (arrow-go holds that).
	chunk  []byte
	sliced bool
	prog   *progress
	w      staging.Writer
	ended  bool
	streamUse
}

func (r *recvReader) count(prog *progress)   { r.prog = prog }
func (r *recvReader) whole() bool            { return r.ended }
func (r *recvReader) stage(w staging.Writer) { r.w = w }
func (r *recvReader) drop()                  { r.buf = nil; r.release(); r.uncharge() }

// release gives the message read back to the pool, unless a body was
// sliced from it.
func (r *recvReader) release() {
	if r.chunk != nil && !r.sliced {
		putChunk(r.chunk)
	}
	r.chunk, r.sliced = nil, false
}

func (r *recvReader) Read(p []byte) (int, error) { return readFilled(&r.buf, r.fill, p) }

// Slice implements arrowingest.Slicer: a body that lies whole in one
// received message is taken from it, not copied.
func (r *recvReader) Slice(n int) ([]byte, error) {
	b, err := sliceFilled(&r.buf, r.fill, n)
	if b != nil {
		r.sliced = true
	}
	return b, err
}

// readFilled answers a Read of a source that keeps what Read answers
// next in buf, and fill to receive more once buf is read.
func readFilled(buf *[]byte, fill func() error, p []byte) (int, error) {
	if err := fill(); err != nil {
		return 0, err
	}
	n := copy(p, *buf)
	*buf = (*buf)[n:]
	return n, nil
}

// sliceFilled answers a Slice of such a source: the next n bytes when buf
// holds them, or nil.
func sliceFilled(buf *[]byte, fill func() error, n int) ([]byte, error) {
	if err := fill(); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // Read answers the stream's end
		}
		return nil, err
	}
	if len(*buf) < n {
		return nil, nil
	}
	b := (*buf)[:n:n]
	*buf = (*buf)[n:]
	return b, nil
}

// fill receives the next message when the last one is consumed.
func (r *recvReader) fill() error {
	for len(r.buf) == 0 {
		r.release()
		r.uncharge()
		if r.ended {
			return io.EOF
		}
		msg, err := recvPaced(r.pace, r.stream.Recv, func(m *deliveryv1.DeliverRequest) int { return len(m.GetArrowIpc()) })
		var broke *streamBroke
		if errors.As(err, &broke) {
			return err // interrupted for idling
		}
		if errors.Is(err, io.EOF) {
			// The caller closed its side: what it sent is made durable
			// before the pipeline learns the stream is whole.
			if r.w != nil {
				if err := r.w.Flush(); err != nil {
					return &stagingFailed{err}
				}
				r.prog.staged.Store(r.w.Staged())
			}
			r.ended = true
			return io.EOF
		}
		if err != nil {
			return &streamBroke{err}
		}
		if msg.GetStart() != nil {
			var v apierror.Violations
			v.Add("start", "only the first message may be a DeliveryStart")
			return v.Err()
		}
		r.buf = msg.GetArrowIpc()
		r.chunk = r.buf
		if err := r.charge(int64(len(r.buf))); err != nil {
			r.buf = nil
			return err
		}
		r.prog.bytesIn.Add(int64(len(r.buf)))
		if err := staged(r.w, r.prog, r.buf); err != nil {
			return err
		}
	}
	return nil
}

// Deliver streams one delivery: see the proto. The delivery is stored
// from the moment the caller's right to the destination is confirmed, so
// that every attempt, failed ones included, can be looked up.
func (s *Service) Deliver(stream deliveryv1.DeliveryService_DeliverServer) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		var v apierror.Violations
		v.Add("start", "is required: the first message must be a DeliveryStart")
		return v.Err()
	}
	if err != nil {
		return err
	}
	r := &recvReader{stream: stream, streamUse: s.streamUse(stream.Context())}
	defer r.end()
	d, err := s.deliver(stream.Context(), first.GetStart(), r)
	if err != nil {
		return err
	}
	return stream.SendAndClose(d)
}

// deliver runs one delivery from its start and its source, for Deliver and
// for Flight's DoPut alike.
func (s *Service) deliver(ctx context.Context, start *deliveryv1.DeliveryStart, src source) (*deliveryv1.Delivery, error) {
	if err := checkStart(start); err != nil {
		return nil, err
	}
	dn, _ := resourcename.Parse(start.GetDestination(), "destinations")
	if err := auth.Visible(ctx, dn.Tenant, start.GetDestination()); err != nil {
		return nil, err
	}
	release, err := s.admission.admit(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	dest, err := s.peers.Destinations.ResolveDestination(ctx, &destinationv1.ResolveDestinationRequest{Name: start.GetDestination()})
	if err != nil {
		return nil, err
	}
	if start.GetResumeOffset() < 0 {
		var v apierror.Violations
		v.Add("start.resume_offset", "must not be negative")
		return nil, v.Err()
	}
	if start.GetResumeOffset() > 0 && start.GetIdempotencyKey() == "" {
		var v apierror.Violations
		v.Add("start.idempotency_key", "is required to resume: it names the interrupted delivery")
		return nil, v.Err()
	}
	pre := s.premint(ctx, dest)
	d, l, held, err := s.begin(ctx, dn.Parent.String(), start)
	if errors.Is(err, apierror.ErrAlreadyExists) {
		return s.rejoin(ctx, dn.Parent.String(), start, dest, src)
	}
	if err != nil {
		return nil, err
	}
	// The delivery is this replica's work until it ends: were the process
	// to die, another takes it over once the lease runs out.
	ctx, h := s.holding(ctx, l)
	defer h.done()
	if start.GetResumeOffset() > 0 {
		return nil, s.abandon(ctx, d, apierror.New(codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_NOTHING_TO_RESUME,
			"no interrupted delivery holds this idempotency key: start from offset 0").With("resume_offset", "0"))
	}
	w, err := s.startStaging(ctx, d, held)
	if err != nil {
		return nil, s.abandon(ctx, d, err)
	}
	out, err := s.execute(ctx, &job{entry: entryDeliver, d: d, dest: dest, live: src, w: w, minted: pre, lease: h})
	if errors.Is(err, errUnsettled) {
		h.again(s.cfg.RecoverInterval) // another claim settles it
	}
	return out, err
}

// begin stores a new delivery in RECEIVING, with its workflow and the
// lease on running it, or answers ErrAlreadyExists when its idempotency
// key is taken.
//
// With a tenant share of staging, it also answers the input the tenant's
// stopped deliveries hold, read in the same transaction.
func (s *Service) begin(ctx context.Context, parent string, start *deliveryv1.DeliveryStart) (*deliveryv1.Delivery, *lease.Lease, int64, error) {
	id := newID(time.Now())
	// With staging on, the delivery starts with its input RECEIVING, in
	// the transaction that creates it, rather than a second one once its
	// staged copy is open (a crash between the two leaves no copy, which a
	// takeover treats as nothing kept yet).
	stagedAtStart := deliveryv1.StagedInputState_STAGED_INPUT_STATE_DISABLED
	if s.staging != nil {
		stagedAtStart = deliveryv1.StagedInputState_STAGED_INPUT_STATE_RECEIVING
	}
	name := parent + "/" + deliveries + "/" + id
	output := start.GetOutputName()
	if output == "" {
		output = id
	}
	d := &deliveryv1.Delivery{
		Name: name, Destination: start.GetDestination(), IdempotencyKey: start.GetIdempotencyKey(),
		OutputName: output, Labels: start.GetLabels(), State: deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING,
		Progress: &deliveryv1.DeliveryProgress{}, Workflow: name + workflowLeaf,
		StagedInput:     &deliveryv1.StagedInput{State: stagedAtStart},
		ServiceInstance: s.cfg.Instance, CreateTime: timestamppb.Now(), TraceParent: traceParent(ctx),
	}
	work := deliveryWork(name, kindDelivery)
	work.Trace = d.TraceParent
	l := s.work.Take(work)
	also := []resourcestore.Also{s.store.Workflows.Creating(parent, newWorkflow(d)), l.Hold}
	var held int64
	if s.staging != nil && s.cfg.tenantStaging() > 0 {
		also = append(also, s.store.ReadingHeldStaging(tenantOfName(name), &held))
	}
	d, err := s.store.Deliveries.Create(ctx, parent, d, also...)
	return d, l, held, err
}

// replay answers the delivery that holds start's idempotency key, waiting
// for its end when it is still running.
func (s *Service) replay(ctx context.Context, parent string, start *deliveryv1.DeliveryStart) (*deliveryv1.Delivery, error) {
	wait := 50 * time.Millisecond
	for {
		d, err := s.byKey(ctx, parent, start)
		if err != nil {
			return nil, err
		}
		switch d.GetState() {
		case deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED:
			return d, nil
		case deliveryv1.DeliveryState_DELIVERY_STATE_FAILED:
			return nil, replayed(d)
		}
		if d.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
			return nil, resumeAt(d.GetName(), d.GetStagedInput().GetBytes())
		}
		if since := time.Since(d.GetUpdateTime().AsTime()); since > stalledAfter {
			return nil, apierror.New(codes.Unavailable, errorsv1.ErrorReason_ERROR_REASON_DELIVERY_STALLED,
				fmt.Sprintf("the delivery holding this idempotency key has not made progress for %s; its server may have stopped", since.Round(time.Second))).
				With("delivery", d.GetName())
		}
		select {
		case <-ctx.Done():
			return nil, apierror.Wrap(ctx.Err(), codes.DeadlineExceeded, errorsv1.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED,
				"the delivery holding this idempotency key is still running; ask again, or GetDelivery").With("delivery", d.GetName())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// convert runs one attempt of a job's steps: it mints access, reads the
// destination's settings, and runs the pipeline, answering the objects and
// the bucket written to, and whether the whole stream was read. The first
// attempt of a run from kept input first takes back what earlier runs
// wrote (restart) or finds the uploads they left to continue. Each step
// is recorded in the workflow as it starts and ends; an error says its
// step.
func (s *Service) convert(ctx context.Context, j *job, src io.Reader, prog *progress, f *flow, first bool) (objects []*deliveryv1.DeliveredObject, bucket string, complete bool, err error) {
	d, dest := j.d, j.dest
	f.start(ctx, stepGetAccess)
	a, err := s.accessFrom(ctx, dest, f, j.minted)
	if a != nil {
		bucket = a.bucket
	}
	if err != nil {
		return nil, bucket, false, inStep(stepGetAccess, err)
	}
	f.succeed(ctx, stepGetAccess)
	f.start(ctx, stepCheckDestination)
	cfg, err := outputspec.Config(dest, filename.Values{Now: d.GetCreateTime().AsTime(), OutputName: d.GetOutputName()})
	if errors.Is(err, outputspec.ErrPGPKey) {
		return nil, bucket, false, inStep(stepCheckDestination, apierror.Wrap(err, codes.FailedPrecondition, errorsv1.ErrorReason_ERROR_REASON_PGP_KEY_NOT_USABLE,
			fmt.Sprintf("the destination's %v: give it a public key with a valid encryption subkey", err)))
	}
	if err != nil {
		return nil, bucket, false, inStep(stepCheckDestination, fmt.Errorf("the destination's settings: %w", err))
	}
	cfg.Spool = s.spool
	cfg.PartitionBuffer = s.cfg.PartitionBuffer
	if rg := s.cfg.rowGroupBytes(); cfg.Parquet.RowGroupBytes == 0 || cfg.Parquet.RowGroupBytes > rg {
		cfg.Parquet.RowGroupBytes = rg
	}
	if cfg.Partition != nil && cfg.MaxOpenFiles == 0 {
		// Open files hold no part buffers while they wait, only their
		// parked bytes (at most a part each): twice the pool's.
		cfg.MaxOpenFiles = 2 * s.pool.Cap()
	}
	if err := outputspec.CheckKeys(cfg, 1); err != nil {
		var v apierror.Violations
		v.Add("start.output_name", "%v", err)
		return nil, bucket, false, inStep(stepCheckDestination, v.Err())
	}
	f.succeed(ctx, stepCheckDestination)
	var retries atomic.Int32
	client := a.client(func() { retries.Add(1) })
	var c carryOver
	if !first || j.staged() {
		if c, err = s.prepare(ctx, j, client, bucket, !first); err != nil {
			return nil, bucket, false, inStep(stepUpload, err)
		}
	}
	f.start(ctx, stepConvert, stepUpload)
	uploadStep := stepUpload
	countRetries := func() {
		if n := retries.Swap(0); n > 0 {
			s.metrics.partRetries.Add(ctx, int64(n))
			f.retried(ctx, uploadStep, n)
		}
	}
	var movedUploading chan struct{}
	sk := s.sink(ctx, d, client, dest, bucket, prog, src, c)
	if dest.GetManifest() {
		sk.ahead = append(sk.ahead, fileset.ManifestKey(cfg.Prefix, d.GetOutputName()))
	}
	if dest.GetSuccessFile() {
		sk.ahead = append(sk.ahead, fileset.SuccessKey(cfg.Prefix, d.GetOutputName()))
	}
	out := &output{
		cfg: cfg, limits: ingestLimits(s.cfg.Ingest, src), prog: prog,
		sink:     sk,
		manifest: dest.GetManifest(), success: dest.GetSuccessFile(),
		delivery: d.GetName(), destination: dest.GetName(), outputName: d.GetOutputName(),
		received: func() {
			complete = true
			f.succeed(ctx, stepConvert)
			if j.staged() {
				return // a run from kept input stays in its phase
			}
			// Stored beside the last part's upload rather than before it
			// (a small delivery's store commit cost as much as its PUT),
			// and joined before the run's outcome is.
			movedUploading = make(chan struct{})
			go func() {
				defer close(movedUploading)
				if _, _, err := s.move(ctx, d.GetName(), []phase{phaseReceiving, phaseUploading}, phaseUploading, change{}); err != nil {
					logging.FromContext(ctx).WarnContext(ctx, "store delivery state", slog.String("error", err.Error()))
				}
			}()
		},
		uploaded: func() {
			countRetries()
			uploadStep = stepFinish
			f.succeed(ctx, stepUpload)
			f.start(ctx, stepFinish)
		},
	}
	objects, err = out.run(ctx, src)
	if err != nil {
		// What landed is kept by the next run, or taken back.
		if ferr := sk.flush(); ferr != nil {
			logging.FromContext(ctx).WarnContext(ctx, "record what landed", slog.String("error", ferr.Error()))
		}
	}
	if movedUploading != nil {
		<-movedUploading
	}
	countRetries()
	return objects, bucket, complete, err
}

// carryOver is what a run continues from an earlier one: the uploads it
// left, and the objects that landed with the same settings.
type carryOver struct {
	resume map[string]resumable
	kept   map[string]*store.Landed
}

// prepare readies a run that follows another: restart-workflow takes back
// what earlier runs wrote and starts over; any other run (a takeover,
// retry-task or another action, an attempt after a transient fault)
// continues: it aborts the uploads they began without recording, and
// answers those they recorded, with their parts, and the objects that
// landed with the same settings.
func (s *Service) prepare(ctx context.Context, j *job, client *s3.Client, bucket string, again bool) (carryOver, error) {
	if j.restart && !again {
		return carryOver{}, s.takeBack(ctx, j.d.GetName(), j.dest, client)
	}
	writes, err := s.store.Writes(ctx, j.d.GetName())
	if err != nil {
		return carryOver{}, err
	}
	// What an earlier run wrote to another bucket (the destination's was
	// corrected since) is taken back where it can be; this run writes its
	// keys afresh.
	owner := optional(j.dest.GetExpectedBucketOwner())
	for _, w := range writes {
		if w.Bucket == bucket {
			continue
		}
		if w.UploadID != "" {
			_, _ = client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), UploadId: aws.String(w.UploadID), ExpectedBucketOwner: owner})
		}
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(w.Bucket), Key: aws.String(w.Key), ExpectedBucketOwner: owner}); err != nil && !awserror.NoSuchBucket(err) {
			logging.FromContext(ctx).WarnContext(ctx, "take back what an earlier run wrote to another bucket", slog.String("bucket", w.Bucket), slog.String("key", w.Key), slog.String("error", err.Error()))
		}
	}
	if err := s.abortUnrecorded(ctx, j.d.GetName(), client, j.dest); err != nil {
		return carryOver{}, err
	}
	resume, err := s.interruptedUploads(ctx, j.d.GetName(), client, bucket)
	if err != nil {
		return carryOver{}, err
	}
	kept := map[string]*store.Landed{}
	fp := fingerprint(j.dest, bucket)
	for _, w := range writes {
		if w.Landed != nil && w.Bucket == bucket && w.Landed.Fingerprint == fp {
			kept[w.Key] = w.Landed
		}
	}
	return carryOver{resume: resume, kept: kept}, nil
}

// fingerprint names the settings that decide what a delivery's objects
// hold and how S3 stores them: an object that landed is kept by a later
// run only when they are the same.
func fingerprint(dest *destinationv1.Destination, bucket string) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&destinationv1.Destination{
		BucketOverride: bucket, Prefix: dest.GetPrefix(), Format: dest.GetFormat(), Compression: dest.GetCompression(),
		FilenameTemplate: dest.GetFilenameTemplate(), Split: dest.GetSplit(), RowNumber: dest.GetRowNumber(),
		PgpPublicKey: dest.GetPgpPublicKey(), Encryption: dest.GetEncryption(), StorageClass: dest.GetStorageClass(),
		CannedAcl: dest.GetCannedAcl(), ExpectedBucketOwner: dest.GetExpectedBucketOwner(),
	})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// sink answers the S3 sink of a delivery, recording each object it writes
// before the first byte, so that a crash leaves nothing that cannot be
// found and taken back.
func (s *Service) sink(ctx context.Context, d *deliveryv1.Delivery, client *s3.Client, dest *destinationv1.Destination, bucket string, prog *progress, src io.Reader, c carryOver) *s3Sink {
	sk := newS3Sink(ctx, client, s.pool, s.cfg.PartConcurrency, dest, bucket, prog.part, s.cfg.AWS.ObjectChecksums())
	rec := &recorder{write: func(ws []store.Write) error {
		return s.store.RecordWrite(context.WithoutCancel(ctx), d.GetName(), ws...)
	}}
	sk.record, sk.note, sk.flush = rec.record, rec.note, rec.flush
	if rn, err := resourcename.Parse(d.GetName(), "deliveries"); err == nil {
		sk.owner = rn.Tenant
	}
	if st, ok := src.(interface {
		onStall(func(take func(int64) bool, give func(int64)))
	}); ok {
		st.onStall(sk.park)
	}
	sk.resume, sk.kept, sk.fingerprint = c.resume, c.kept, fingerprint(dest, bucket)
	// Each object holds its first bytes in its own memory rather than
	// queue for the tenant's share of the pool: a small delivery goes up
	// in one request without waiting for buffers, many small partition
	// files can finish at once (their writer bounds how many are open),
	// and a delivery waiting for a running slot holds no buffer. A file
	// that is not one of many takes buffers past its first MiB, so that a
	// large object's first part is not held and copied twice.
	sk.lazy = true
	if dest.GetPartitionBy() == nil {
		sk.lazyBytes = smallInput
	}
	return sk
}

// track stores the delivery's counters every ProgressInterval (and at
// least every heartbeat, which tells a waiting second caller it is alive)
// until stop is called.
func (s *Service) track(ctx context.Context, name string, prog *progress) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(s.cfg.ProgressInterval)
		defer tick.Stop()
		var last *deliveryv1.DeliveryProgress
		lastWrite := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if h, ok := s.running.Load(name); ok {
				if rh, ok := h.(*runHandle); ok {
					s.cancelIfAsked(ctx, name, rh.cancel)
				}
			}
			now := prog.snapshot()
			if last != nil && now.GetBytesIn() == last.GetBytesIn() && now.GetParts() == last.GetParts() && time.Since(lastWrite) < heartbeat {
				continue
			}
			staged := prog.staged.Load()
			if _, _, err := s.move(ctx, name, running, phaseSame, change{progress: now, staged: &staged}); err != nil {
				logging.FromContext(ctx).WarnContext(ctx, "store delivery progress", slog.String("delivery", name), slog.String("error", err.Error()))
			}
			last, lastWrite = now, time.Now()
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// ingestLimits answers the limits a source is read with: a caller's
// stream's Arrow bodies count against the receive budget.
func ingestLimits(base arrowingest.Limits, src io.Reader) arrowingest.Limits {
	if b, ok := src.(interface{ receiveBudget() arrowingest.Budget }); ok {
		if budget := b.receiveBudget(); budget != nil {
			base.Budget = budget
		}
	}
	return base
}
