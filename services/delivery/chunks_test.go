package delivery

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// received lays b out as gRPC hands a message to its codec: in frames
// of 16 KiB.
func received(b []byte) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 16<<10)
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return s
}

// A slice of the Arrow stream decodes into a pooled buffer, to what proto
// decodes; anything else is left to proto.
func TestDecodeRequest(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 127, 128, 4095, 4096, 4097, 100_000, 1 << 20, MaxMessageBytes - 16} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(rnd.Uint32())
		}
		wire, err := proto.Marshal(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: payload}})
		if err != nil {
			t.Fatal(err)
		}
		got := &deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: &deliveryv1.DeliveryStart{Destination: "stale"}}}
		if !decodeRequest(received(wire), got) {
			t.Fatalf("%d bytes: left to proto", n)
		}
		want := &deliveryv1.DeliverRequest{}
		if err := proto.Unmarshal(wire, want); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%d bytes: decoded differently from proto", n)
		}
		if c := cap(got.GetArrowIpc()); c&(c-1) != 0 || c < 1<<minChunkClass {
			t.Errorf("%d bytes: decoded into a buffer of capacity %d, not one of the pool's", n, c)
		}
	}
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chunk := marshal(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: []byte("arrow")}})
	for name, wire := range map[string][]byte{
		"a start":        marshal(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: &deliveryv1.DeliveryStart{Destination: "d"}}}),
		"two slices":     append(bytes.Clone(chunk), chunk...),
		"unknown field":  protowire.AppendVarint(protowire.AppendTag(bytes.Clone(chunk), 9, protowire.VarintType), 1),
		"truncated":      chunk[:len(chunk)-1],
		"length too big": {chunk[0], 0xff, 0xff, 0xff, 0xff, 0x0f},
		"empty":          {},
	} {
		if decodeRequest(received(wire), &deliveryv1.DeliverRequest{}) {
			t.Errorf("%s: decoded, want it left to proto", name)
		}
	}
	if decodeRequest(received(chunk), &deliveryv1.Delivery{}) {
		t.Error("another message type decoded, want it left to proto")
	}
}

// fakeDeliver is a Deliver stream's server side that answers queued
// messages.
type fakeDeliver struct {
	grpc.ServerStream
	msgs []*deliveryv1.DeliverRequest
}

func (f *fakeDeliver) Recv() (*deliveryv1.DeliverRequest, error) {
	if len(f.msgs) == 0 {
		return nil, io.EOF
	}
	m := f.msgs[0]
	f.msgs = f.msgs[1:]
	return m, nil
}

func (f *fakeDeliver) SendAndClose(*deliveryv1.Delivery) error { return nil }

// The batches a stream was read into stay intact while later messages
// come and go through the pool: a message a body was taken from is never
// given back, one whose bytes were copied is.
func TestReceivedBuffersAreReusedOnlyOnceRead(t *testing.T) {
	recs := sampledata.All(sampledata.NewCustomer360(nil, 20_000, 2500, 3))
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	ipcBytes := ipcStream(t, sampledata.Customer360Schema, recs)
	// Slices of alternating sizes: some hold whole messages, others cut
	// bodies across them.
	stream := &fakeDeliver{}
	for b, i := ipcBytes, 0; len(b) > 0; i++ {
		n := min(len(b), []int{3 << 20, 700_000, 64 << 10}[i%3])
		wire, err := proto.Marshal(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: b[:n]}})
		if err != nil {
			t.Fatal(err)
		}
		req := &deliveryv1.DeliverRequest{}
		if !decodeRequest(received(wire), req) {
			t.Fatal("a slice of the stream left to proto")
		}
		stream.msgs = append(stream.msgs, req)
		b = b[n:]
	}
	src := &recvReader{stream: stream, prog: &progress{}}
	r, err := arrowingest.NewReader(src, arrowingest.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	var got []arrow.RecordBatch
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
		// Whatever the pool holds now is written over, as the next
		// stream's messages would be.
		for class := minChunkClass; class <= maxChunkClass; class++ {
			var taken [][]byte
			for range 4 {
				c := getChunk(1 << class)
				for i := range c {
					c[i] = 0xa5
				}
				taken = append(taken, c)
			}
			for _, c := range taken {
				putChunk(c)
			}
		}
	}
	if len(got) != len(recs) {
		t.Fatalf("read %d batches, want %d", len(got), len(recs))
	}
	for i := range got {
		if !array.RecordEqual(got[i], recs[i]) {
			t.Errorf("batch %d changed after its message went back to the pool", i)
		}
		got[i].Release()
	}
}

// BenchmarkReceive reads a 200,000-row stream of the customer 360 table as
// a Deliver stream's messages arrive (1 MiB slices, in 16 KiB frames)
// into validated batches: decoded by proto as before, or into pooled
// buffers.
func BenchmarkReceive(b *testing.B) {
	recs := sampledata.All(sampledata.NewCustomer360(nil, 200_000, 0, 3))
	ipcBytes := ipcStream(b, sampledata.Customer360Schema, recs)
	for _, r := range recs {
		r.Release()
	}
	var frames []mem.BufferSlice
	for in := ipcBytes; len(in) > 0; {
		n := min(len(in), 1<<20)
		wire, err := proto.Marshal(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: in[:n]}})
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, received(wire))
		in = in[n:]
	}
	for _, c := range []struct {
		name   string
		decode func(mem.BufferSlice, *deliveryv1.DeliverRequest) error
	}{
		{"proto", func(data mem.BufferSlice, req *deliveryv1.DeliverRequest) error {
			// As grpc-go's proto codec: gathered into a pooled buffer.
			buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
			defer buf.Free()
			return proto.Unmarshal(buf.ReadOnlyData(), req)
		}},
		{"pooled", func(data mem.BufferSlice, req *deliveryv1.DeliverRequest) error {
			if !decodeRequest(data, req) {
				return errors.New("left to proto")
			}
			return nil
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(ipcBytes)))
			b.ReportAllocs()
			for b.Loop() {
				stream := &fakeDeliver{}
				for _, f := range frames {
					req := &deliveryv1.DeliverRequest{}
					if err := c.decode(f, req); err != nil {
						b.Fatal(err)
					}
					stream.msgs = append(stream.msgs, req)
				}
				r, err := arrowingest.NewReader(&recvReader{stream: stream, prog: &progress{}}, arrowingest.Limits{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				for {
					rec, err := r.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					rec.Release()
				}
				r.Release()
			}
		})
	}
}
