// Package deliverclient streams Arrow record batches to Sluice's delivery
// service: the DeliveryStart, then one Arrow IPC stream cut into messages
// of a steady size (1 MiB by default; 1 to 4 MiB go fastest), then the
// answer. Internal services use it rather than hand-rolling the stream.
package deliverclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
)

// DefaultMessageBytes is the size of each message of the stream.
const DefaultMessageBytes = 1 << 20

// Progress is what has been sent so far.
type Progress struct {
	Rows, Batches, Bytes int64
}

// Options tune a delivery.
type Options struct {
	// MessageBytes is the size of each message; DefaultMessageBytes when 0.
	MessageBytes int
	// Progress, when set, is called after each batch is handed to the
	// stream.
	Progress func(Progress)
	// CallOptions are passed to the Deliver call (credentials, ...).
	CallOptions []grpc.CallOption
}

// Deliver sends the batches of rr to the destination named in start and
// answers the Delivery: what landed. An error is the service's status
// (status.FromError reads its reason and details).
func Deliver(ctx context.Context, client deliveryv1.DeliveryServiceClient, start *deliveryv1.DeliveryStart, rr array.RecordReader, o Options) (*deliveryv1.Delivery, error) {
	return send(ctx, client, start, o, func(w io.Writer, progress func(rec arrow.RecordBatch)) error {
		iw := ipc.NewWriter(w, ipc.WithSchema(rr.Schema()))
		for rr.Next() {
			rec := rr.RecordBatch()
			if err := iw.Write(rec); err != nil {
				return err
			}
			progress(rec)
		}
		if err := rr.Err(); err != nil {
			return fmt.Errorf("read the batches: %w", err)
		}
		return iw.Close()
	})
}

// DeliverStream sends bytes that already are an Arrow IPC stream, such as
// a `.arrows` file, as they are.
func DeliverStream(ctx context.Context, client deliveryv1.DeliveryServiceClient, start *deliveryv1.DeliveryStart, stream io.Reader, o Options) (*deliveryv1.Delivery, error) {
	return send(ctx, client, start, o, func(w io.Writer, _ func(arrow.RecordBatch)) error {
		_, err := io.Copy(w, stream)
		return err
	})
}

// errAnswered says the service answered before the stream ended.
var errAnswered = errors.New("the service answered before the stream ended")

func send(ctx context.Context, client deliveryv1.DeliveryServiceClient, start *deliveryv1.DeliveryStart, o Options, write func(io.Writer, func(arrow.RecordBatch)) error) (*deliveryv1.Delivery, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Deliver(ctx, o.CallOptions...)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: start}}); err != nil {
		return answer(stream, err)
	}
	size := o.MessageBytes
	if size <= 0 {
		size = DefaultMessageBytes
	}
	mw := &messageWriter{stream: stream, buf: make([]byte, 0, size)}
	var p Progress
	if o.Progress != nil {
		// Bytes as they go, for a stream sent as it is (no batches to
		// count) and between large batches.
		mw.onSent = func(sent int64) {
			p.Bytes = sent
			o.Progress(p)
		}
	}
	werr := write(mw, func(rec arrow.RecordBatch) {
		p.Rows += rec.NumRows()
		p.Batches++
		p.Bytes = mw.sent + int64(len(mw.buf))
		if o.Progress != nil {
			o.Progress(p)
		}
	})
	if werr == nil {
		werr = mw.flush()
	}
	if errors.Is(werr, errAnswered) {
		return answer(stream, werr)
	}
	if werr != nil {
		// Cancelling tells the service the stream is incomplete: it
		// keeps nothing.
		cancel()
		return nil, werr
	}
	return stream.CloseAndRecv()
}

// answer reads the service's answer after Send failed: the service
// answered early (an idempotent replay, or a refusal).
func answer(stream deliveryv1.DeliveryService_DeliverClient, err error) (*deliveryv1.Delivery, error) {
	d, rerr := stream.CloseAndRecv()
	if rerr != nil {
		return nil, rerr
	}
	if d != nil {
		return d, nil
	}
	return nil, err
}

// messageWriter cuts the IPC stream into messages of a steady size.
type messageWriter struct {
	stream deliveryv1.DeliveryService_DeliverClient
	buf    []byte
	sent   int64
	onSent func(sent int64)
}

func (w *messageWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *messageWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	// Send may keep the slice until it is written: send a copy and reuse
	// the buffer.
	msg := &deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: append([]byte(nil), w.buf...)}}
	if err := w.stream.Send(msg); err != nil {
		if errors.Is(err, io.EOF) {
			return errAnswered
		}
		return err
	}
	w.sent += int64(len(w.buf))
	w.buf = w.buf[:0]
	if w.onSent != nil {
		w.onSent(w.sent)
	}
	return nil
}

// DeliverResumable delivers a stream it can read again from its start
// (open answers a fresh reader each time), resuming after a broken
// connection instead of sending everything again: it asks the service
// where to resume (a Deliver whose offset is wrong answers the right one
// in the ErrorInfo metadata `resume_offset`), skips that many bytes, and
// sends the rest, at most attempts times. start must carry an idempotency
// key: it names the delivery to resume.
func DeliverResumable(ctx context.Context, client deliveryv1.DeliveryServiceClient, start *deliveryv1.DeliveryStart, open func() (io.Reader, error), o Options, attempts int) (*deliveryv1.Delivery, error) {
	if start.GetIdempotencyKey() == "" {
		return nil, errors.New("deliverclient: resuming needs an idempotency key in the start")
	}
	var offset int64
	for attempt := 1; ; attempt++ {
		r, err := open()
		if err != nil {
			return nil, err
		}
		if _, err := io.CopyN(io.Discard, r, offset); err != nil {
			return nil, fmt.Errorf("skip the %d bytes the service holds: %w", offset, err)
		}
		s := proto.Clone(start).(*deliveryv1.DeliveryStart)
		s.ResumeOffset = offset
		d, err := DeliverStream(ctx, client, s, r, o)
		if err == nil || ctx.Err() != nil || attempt >= attempts {
			return d, err
		}
		e := apierror.FromStatus(err)
		switch {
		case e.Reason == errorsv1.ErrorReason_ERROR_REASON_STREAM_IDLE || e.Reason == errorsv1.ErrorReason_ERROR_REASON_RECEIVE_BUDGET_SPENT:
			// Interrupted by the service, its input kept: resume from
			// there, after the delay it asks for.
			n, perr := strconv.ParseInt(e.Metadata["resume_offset"], 10, 64)
			if perr != nil {
				return nil, err
			}
			offset = n
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(max(e.RetryAfter, 100*time.Millisecond)):
			}
		case e.Reason == errorsv1.ErrorReason_ERROR_REASON_RESUME_OFFSET_MISMATCH:
			n, perr := strconv.ParseInt(e.Metadata["resume_offset"], 10, 64)
			if perr != nil {
				return nil, err
			}
			offset = n
		case e.Code == codes.Unavailable || e.Code == codes.Canceled || e.Code == codes.Internal || e.Code == codes.Aborted:
			// The connection broke: ask where to resume.
			offset = 0
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		default:
			return nil, err
		}
	}
}
