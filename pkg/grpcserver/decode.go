package grpcserver

import (
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// grpc-go turns a request that does not decode (invalid wire format, a
// string that is not UTF-8) into Internal before any interceptor runs, so
// the caller reads "server error" and nothing is logged. lenientCodec
// decodes as the proto codec does, but on failure leaves the message empty
// and notes the error, which the validation interceptor then answers as
// InvalidArgument and the logging interceptor logs.
type lenientCodec struct {
	base   encoding.CodecV2
	direct func(data mem.BufferSlice, v any) bool // Config.Decode
}

// undecodable holds decode errors by message, until the request's own
// validation interceptor takes them out.
var undecodable sync.Map // proto.Message -> error

func newLenientCodec(direct func(mem.BufferSlice, any) bool) lenientCodec {
	return lenientCodec{base: encoding.GetCodecV2("proto"), direct: direct}
}

func (c lenientCodec) Name() string { return c.base.Name() }

func (c lenientCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if c.direct != nil && c.direct(data, v) {
		return nil
	}
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	proto.Reset(m)
	undecodable.Store(m, err)
	return nil
}

// decodeError answers and forgets the decode error noted for m, if any.
func decodeError(m any) error {
	if m == nil {
		return nil
	}
	if err, ok := undecodable.LoadAndDelete(m); ok {
		return err.(error)
	}
	return nil
}
