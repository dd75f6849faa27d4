// Package staging keeps the Arrow input of deliveries while they run and
// after they fail, so that a delivery can run again, or a caller resume an
// interrupted stream, without the data being sent twice.
//
// A staged stream is written in chunks, each framed with its length and
// CRC32C, so that every byte is verified when it is read back and a torn
// tail (a crash in the middle of a write) is told from data: a reader
// stops at the last whole chunk, and the bytes before it are the input
// the delivery holds.
package staging

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// ErrFull is answered when staging a delivery would pass the store's cap.
var ErrFull = errors.New("staging is full")

// ErrNotFound is answered for a stream the store does not hold.
var ErrNotFound = errors.New("no staged input")

// Store holds staged streams by id.
type Store interface {
	// Create starts a new stream, replacing any of the same id.
	Create(ctx context.Context, id string) (Writer, error)
	// Append continues a stream after its last whole chunk, for a caller
	// resuming an interrupted delivery; it answers the bytes held.
	Append(ctx context.Context, id string) (Writer, int64, error)
	// Open reads a stream back, verifying every chunk.
	Open(ctx context.Context, id string) (io.ReadCloser, error)
	// Size answers the bytes of input a stream holds (whole chunks).
	Size(ctx context.Context, id string) (int64, error)
	// Delete removes a stream; deleting one that is gone is not an error.
	Delete(ctx context.Context, id string) error
	// Used answers the bytes the store takes, framing included.
	Used() int64
}

// Writer appends to a staged stream.
type Writer interface {
	// Write stages p as one chunk (after what is buffered).
	io.Writer
	// Flush hands what is buffered to the store, so that Staged counts
	// it and a reader sees it.
	Flush() error
	// Staged answers the bytes of input flushed so far, from the stream's
	// start.
	Staged() int64
	// Close flushes and makes the stream durable.
	Close() error
	// Discard ends the stream without making it durable, for input about
	// to be deleted (a delivery that succeeded): no fsync or upload spent
	// on bytes nobody will read. Staged then counts everything written.
	Discard() error
}

// chunkHeader frames every chunk: payload length and CRC32C.
const chunkHeader = 8

// MaxChunk bounds one chunk, so that a reader never allocates more for a
// length it reads.
const MaxChunk = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends p's chunk header to dst.
func appendFrame(dst, p []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p)))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(p, castagnoli))
}

// CorruptError says a staged stream does not read back as written.
type CorruptError struct {
	Offset int64 // input offset of the chunk at fault
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("staged input is corrupt at byte %d: %s", e.Offset, e.Reason)
}

// chunkReader reads a framed stream, answering the payloads and verifying
// each chunk's checksum. With tolerant set, a torn last chunk ends the
// stream instead of failing it (what a crash leaves).
type chunkReader struct {
	r        io.Reader
	buf      []byte
	pos      int
	off      int64 // input bytes answered so far
	tolerant bool
	err      error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.pos == len(c.buf) {
		if c.err != nil {
			return 0, c.err
		}
		c.next()
	}
	n := copy(p, c.buf[c.pos:])
	c.pos += n
	c.off += int64(n)
	return n, nil
}

func (c *chunkReader) next() {
	var h [chunkHeader]byte
	n, err := io.ReadFull(c.r, h[:])
	if err == io.EOF {
		c.err = io.EOF
		return
	}
	torn := func(why string) {
		if c.tolerant {
			c.err = io.EOF
			return
		}
		c.err = &CorruptError{Offset: c.off, Reason: why}
	}
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			torn(fmt.Sprintf("a chunk header is cut after %d bytes", n))
			return
		}
		c.err = err
		return
	}
	size, sum := binary.LittleEndian.Uint32(h[:]), binary.LittleEndian.Uint32(h[4:])
	if size > MaxChunk {
		c.err = &CorruptError{Offset: c.off, Reason: fmt.Sprintf("a chunk claims %d bytes", size)}
		return
	}
	if cap(c.buf) < int(size) {
		c.buf = make([]byte, size)
	}
	c.buf, c.pos = c.buf[:size], 0
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		c.buf = c.buf[:0]
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			torn("the last chunk is cut short")
			return
		}
		c.err = err
		return
	}
	if crc32.Checksum(c.buf, castagnoli) != sum {
		c.buf = c.buf[:0]
		c.err = &CorruptError{Offset: c.off, Reason: "a chunk's CRC32C does not match its bytes"}
	}
}
