package delivery

import (
	"encoding/binary"
	"errors"
	"io"

	flightgen "github.com/apache/arrow-go/v18/arrow/flight/gen/flight"
	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/staging"
)

// FlightRules opens DoPut to any caller of a tenant, like Deliver, and
// denies the rest of Arrow Flight, which Sluice does not serve.
var FlightRules = func() auth.Rules {
	rules := auth.Rules{}
	for _, m := range flightgen.FlightService_ServiceDesc.Streams {
		rules[flightMethod(m.StreamName)] = auth.Deny
	}
	for _, m := range flightgen.FlightService_ServiceDesc.Methods {
		rules[flightMethod(m.MethodName)] = auth.Deny
	}
	rules[flightMethod("DoPut")] = auth.AnyCaller
	return rules
}()

func flightMethod(name string) string {
	return "/" + flightgen.FlightService_ServiceDesc.ServiceName + "/" + name
}

// flightServer is Arrow Flight's door onto the delivery pipeline: DoPut
// with the serialized DeliveryStart as the descriptor's command, the same
// pipeline and limits as Deliver, the Delivery as the PutResult's app
// metadata.
type flightServer struct {
	flightgen.UnimplementedFlightServiceServer
	svc *Service
}

// DoPut runs one delivery from a Flight stream.
func (f *flightServer) DoPut(stream flightgen.FlightService_DoPutServer) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		var v apierror.Violations
		v.Add("flight_descriptor", "is required: the first FlightData carries the descriptor and the schema")
		return v.Err()
	}
	if err != nil {
		return err
	}
	var v apierror.Violations
	desc := first.GetFlightDescriptor()
	start := &deliveryv1.DeliveryStart{}
	switch {
	case desc == nil:
		v.Add("flight_descriptor", "is required: its command is the serialized DeliveryStart")
	case desc.GetType() != flightgen.FlightDescriptor_CMD:
		v.Add("flight_descriptor.type", "must be CMD, with the serialized DeliveryStart as the command")
	default:
		if err := proto.Unmarshal(desc.GetCmd(), start); err != nil {
			v.Add("flight_descriptor.cmd", "must be a serialized sluice.delivery.v1.DeliveryStart: %v", err)
		} else if start.GetResumeOffset() != 0 {
			// A Flight stream restarts with its schema; resuming at a byte
			// offset is Deliver's.
			v.Add("flight_descriptor.cmd.resume_offset", "resuming an interrupted stream is done with Deliver")
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	r := &flightReader{stream: stream, next: first, streamUse: f.svc.streamUse(stream.Context())}
	defer r.end()
	d, err := f.svc.deliver(stream.Context(), start, r)
	if err != nil {
		return err
	}
	meta, err := proto.Marshal(d)
	if err != nil {
		return err
	}
	return stream.Send(&flightgen.PutResult{AppMetadata: meta})
}

// flightReader turns FlightData messages back into the bytes of an Arrow
// IPC stream (each message framed with its continuation marker and
// length), ending with the end-of-stream marker when the caller closes
// its side, so that the same hardened reader checks them.
type flightReader struct {
	stream flightgen.FlightService_DoPutServer
	next   *flightgen.FlightData // the first message, received by DoPut
	buf    []byte                // what Read answers next
	body   []byte                // the current message's body, after buf
	ended  bool
	prog   *progress
	w      staging.Writer
	streamUse
}

func (r *flightReader) count(prog *progress)   { r.prog = prog }
func (r *flightReader) stage(w staging.Writer) { r.w = w }
func (r *flightReader) drop()                  { r.buf, r.body = nil, nil; r.uncharge() }
func (r *flightReader) whole() bool            { return r.ended }

var endOfStream = []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}

func (r *flightReader) Read(p []byte) (int, error) { return readFilled(&r.buf, r.fill, p) }

// Slice implements arrowingest.Slicer: a FlightData's body is the IPC
// message's, taken as it is.
func (r *flightReader) Slice(n int) ([]byte, error) { return sliceFilled(&r.buf, r.fill, n) }

// fill takes the current message's body, or receives the next message,
// when what Read answers is consumed.
func (r *flightReader) fill() error {
	for len(r.buf) == 0 {
		if len(r.body) > 0 {
			r.buf, r.body = r.body, nil
			break
		}
		r.uncharge()
		if r.ended {
			return io.EOF
		}
		msg := r.next
		r.next = nil
		if msg == nil {
			var err error
			var broke *streamBroke
			if msg, err = recvPaced(r.pace, r.stream.Recv, func(m *flightgen.FlightData) int { return len(m.GetDataHeader()) + len(m.GetDataBody()) }); errors.As(err, &broke) {
				return err // interrupted for idling
			} else if errors.Is(err, io.EOF) {
				r.buf, r.ended = endOfStream, true
				if err := staged(r.w, r.prog, endOfStream); err != nil {
					return err
				}
				if r.w != nil {
					if err := r.w.Flush(); err != nil {
						return &stagingFailed{err}
					}
				}
				break
			} else if err != nil {
				return &streamBroke{err}
			}
		}
		if err := r.charge(int64(len(msg.GetDataHeader()) + len(msg.GetDataBody()))); err != nil {
			return err
		}
		r.frame(msg)
		if err := staged(r.w, r.prog, r.buf, r.body); err != nil {
			return err
		}
	}
	return nil
}

// frame lays one FlightData out as an IPC message.
func (r *flightReader) frame(msg *flightgen.FlightData) {
	header, body := msg.GetDataHeader(), msg.GetDataBody()
	if len(header) == 0 {
		return // a message with only app metadata
	}
	// The body is read from the message itself, not copied.
	padded := (len(header) + 7) &^ 7
	b := make([]byte, 8+padded)
	binary.LittleEndian.PutUint32(b, 0xffffffff)
	binary.LittleEndian.PutUint32(b[4:], uint32(padded))
	copy(b[8:], header)
	r.buf, r.body = b, body
	r.prog.bytesIn.Add(int64(len(header) + len(body)))
}
