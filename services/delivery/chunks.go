package delivery

import (
	"io"
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
)

// Received slices of Arrow streams are decoded into buffers of their own,
// kept in a pool by size, and given back once read: proto's decoding
// allocated each anew (a delivery's every byte, then copied into its
// Arrow message body and garbage), a sixth of what the delivery service
// allocated under load, and garbage made while the collector marks counts
// as live, which raised its heap goal (#26).

const (
	minChunkClass = 12 // 4 KiB
	maxChunkClass = 23 // 8 MiB: MaxMessageBytes
)

var chunkPools [maxChunkClass + 1]sync.Pool // of *[]byte, len = cap = 1<<class

// getChunk answers a buffer of n bytes, from the pool when one of its
// size class is there.
func getChunk(n int) []byte {
	class := max(minChunkClass, bits.Len(uint(max(n, 1)-1)))
	if class > maxChunkClass {
		return make([]byte, n)
	}
	if p, ok := chunkPools[class].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<class)
}

// putChunk gives back a buffer nothing refers to any more. Only buffers of
// a class's exact size are kept.
func putChunk(b []byte) {
	c := cap(b)
	if c == 0 || c&(c-1) != 0 {
		return
	}
	class := bits.Len(uint(c)) - 1
	if class < minChunkClass || class > maxChunkClass {
		return
	}
	b = b[:c]
	chunkPools[class].Put(&b)
}

// arrowIpcTag is DeliverRequest's arrow_ipc field (2) as bytes.
var arrowIpcTag = byte(protowire.EncodeTag(2, protowire.BytesType))

// decodeRequest implements grpcserver.Config.Decode: a DeliverRequest
// that carries only a slice of the Arrow stream (every message but the
// first) is decoded into a pooled buffer. Anything else, a DeliveryStart
// or a message with more fields, is left to proto.
func decodeRequest(data mem.BufferSlice, v any) bool {
	req, ok := v.(*deliveryv1.DeliverRequest)
	if !ok {
		return false
	}
	total := data.Len()
	r := data.Reader()
	defer r.Close()
	var head [1 + binaryMaxVarint]byte
	k, _ := io.ReadFull(r, head[:min(total, len(head))])
	if k < 2 || head[0] != arrowIpcTag {
		return false
	}
	n, m := protowire.ConsumeVarint(head[1:k])
	if m < 0 || uint64(total) != uint64(1+m)+n {
		return false
	}
	b := getChunk(int(n))
	got := copy(b, head[1+m:k])
	if _, err := io.ReadFull(r, b[got:]); err != nil {
		putChunk(b)
		return false
	}
	req.Reset()
	req.Payload = &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: b}
	return true
}

const binaryMaxVarint = 10
