package deliverclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
)

// DeliverFlight sends the batches of rr through Arrow Flight's DoPut on
// the delivery service, the serialized start as the descriptor's command,
// and answers the Delivery the PutResult's app metadata carries. It is
// Deliver for callers that speak Flight already; a Flight stream cannot
// resume (it restarts with its schema), so a dropped connection means
// calling again with the same idempotency key.
func DeliverFlight(ctx context.Context, client flight.Client, start *deliveryv1.DeliveryStart, rr array.RecordReader, o Options) (*deliveryv1.Delivery, error) {
	cmd, err := proto.Marshal(start)
	if err != nil {
		return nil, fmt.Errorf("encode the start: %w", err)
	}
	stream, err := client.DoPut(ctx, o.CallOptions...)
	if err != nil {
		return nil, err
	}
	w := flight.NewRecordWriter(stream, ipc.WithSchema(rr.Schema()))
	w.SetFlightDescriptor(&flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: cmd})
	var sent Progress
	for rr.Next() {
		rec := rr.RecordBatch()
		if err := w.Write(rec); err != nil {
			break // the server answered early: Recv says why
		}
		sent.Rows += rec.NumRows()
		sent.Batches++
		if o.Progress != nil {
			o.Progress(sent)
		}
	}
	if err := rr.Err(); err != nil {
		_ = stream.CloseSend()
		return nil, fmt.Errorf("read the batches: %w", err)
	}
	_ = w.Close()
	_ = stream.CloseSend()
	res, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if len(res.GetAppMetadata()) == 0 {
		return nil, errors.New("the delivery service answered no Delivery")
	}
	d := &deliveryv1.Delivery{}
	if err := proto.Unmarshal(res.GetAppMetadata(), d); err != nil {
		return nil, fmt.Errorf("decode the answer: %w", err)
	}
	return d, nil
}
