package arrowingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/sampledata"
)

// stream writes recs as one IPC stream.
func stream(t testing.TB, schema *arrow.Schema, recs []arrow.RecordBatch, opts ...ipc.Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, append([]ipc.Option{ipc.WithSchema(schema)}, opts...)...)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func customers(t testing.TB, rows int64, batchRows int) []arrow.RecordBatch {
	t.Helper()
	recs := sampledata.All(sampledata.NewCustomer360(nil, rows, batchRows, 7))
	t.Cleanup(func() {
		for _, r := range recs {
			r.Release()
		}
	})
	return recs
}

// frame is one message of a stream: where it starts, its metadata and
// its body.
type frame struct {
	start      int
	meta, body []byte
}

// frames splits an IPC stream into its messages (the end marker excluded).
func frames(t testing.TB, b []byte) []frame {
	t.Helper()
	var out []frame
	for pos := 0; pos+8 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[pos+4:]))
		if n == 0 {
			break
		}
		meta := b[pos+8 : pos+8+n]
		msg, err := parseMessage(meta)
		if err != nil {
			t.Fatal(err)
		}
		end := pos + 8 + n + int(msg.bodyLen)
		out = append(out, frame{start: pos, meta: meta, body: b[pos+8+n : end]})
		pos = end
	}
	return out
}

func readAll(t testing.TB, src io.Reader, lim Limits, mem memory.Allocator) ([]arrow.RecordBatch, error) {
	t.Helper()
	r, err := NewReader(src, lim, mem)
	if err != nil {
		return nil, err
	}
	defer r.Release()
	var out []arrow.RecordBatch
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			for _, r := range out {
				r.Release()
			}
			return nil, err
		}
		out = append(out, rec)
	}
}

func TestReadsWhatArrowWrote(t *testing.T) {
	recs := customers(t, 5000, 1200)
	b := stream(t, sampledata.Customer360Schema, recs)
	for name, src := range map[string]func() io.Reader{
		"whole":         func() io.Reader { return bytes.NewReader(b) },
		"byte by byte":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half messages": func() io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
	} {
		t.Run(name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			got, err := readAll(t, src(), Limits{}, mem)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recs) {
				t.Fatalf("read %d batches, want %d", len(got), len(recs))
			}
			for i := range got {
				if !array.RecordEqual(got[i], recs[i]) {
					t.Errorf("batch %d differs from the one written", i)
				}
				got[i].Release()
			}
		})
	}
}

// refused reads b and answers the *Error it must end with.
func refused(t *testing.T, src io.Reader, lim Limits) *Error {
	t.Helper()
	got, err := readAll(t, src, lim, nil)
	for _, r := range got {
		r.Release()
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an *arrowingest.Error", err)
	}
	return e
}

func TestRefusesBadStreams(t *testing.T) {
	recs := customers(t, 3000, 1000)
	good := stream(t, sampledata.Customer360Schema, recs)
	fs := frames(t, good)
	eos := good[len(good)-8:]

	other := arrow.NewSchema([]arrow.Field{{Name: "customer_id", Type: arrow.BinaryTypes.String}}, nil)
	ob := array.NewRecordBuilder(memory.DefaultAllocator, other)
	ob.Field(0).(*array.StringBuilder).AppendValues([]string{"a", "b"}, nil)
	orec := ob.NewRecordBatch()
	defer orec.Release()
	ob.Release()
	otherFrames := frames(t, stream(t, other, []arrow.RecordBatch{orec}))

	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	whole := func(f frame) []byte { return good[f.start : f.start+8+len(f.meta)+len(f.body)] }
	lastBatch := fs[len(fs)-1]

	cases := []struct {
		name      string
		in        []byte
		lim       Limits
		want      string
		batch     int
		offsetOfs int
	}{
		{name: "garbage", in: []byte("this is not an Arrow stream at all"), want: "over the limit"},
		{name: "empty", in: nil, want: "without Arrow's end-of-stream marker"},
		{name: "no end marker", in: good[:len(good)-8], want: "without Arrow's end-of-stream marker", batch: 4, offsetOfs: len(good) - 8},
		{name: "bytes after the end", in: join(good, []byte{1}), want: "follow the end-of-stream marker", batch: 4},
		{name: "cut inside the last batch", in: good[:lastBatch.start+20], want: "ends inside a message", batch: 3, offsetOfs: lastBatch.start},
		{name: "a batch of another schema", in: join(whole(fs[0]), streamFrame(otherFrames[1]), eos), want: "", batch: 1},
		{name: "starts with a batch", in: join(streamFrame(fs[len(fs)-1]), eos), want: "must start with a schema"},
		{name: "second schema", in: join(whole(fs[0]), whole(fs[0]), eos), want: "second schema", batch: 1},
		{name: "body over the limit", in: good, lim: Limits{MaxBatchBytes: 1024}, want: "over the limit of 1024", batch: 1},
		{name: "metadata over the limit", in: good, lim: Limits{MaxMetadataBytes: 64}, want: "metadata of", batch: 0},
		{name: "too many columns", in: good, lim: Limits{MaxColumns: 5}, want: "more than 5 fields"},
		{name: "too deep", in: good, lim: Limits{MaxDepth: 1}, want: "deeper than 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := refused(t, bytes.NewReader(c.in), c.lim)
			if !strings.Contains(e.Error(), c.want) {
				t.Errorf("error %q does not say %q", e, c.want)
			}
			if e.Batch != c.batch {
				t.Errorf("error names batch %d, want %d: %v", e.Batch, c.batch, e)
			}
			if c.offsetOfs != 0 && e.Offset != int64(c.offsetOfs) {
				t.Errorf("error at byte %d, want %d", e.Offset, c.offsetOfs)
			}
		})
	}
}

// streamFrame answers a frame's bytes with the continuation marker.
func streamFrame(f frame) []byte {
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:], continuation)
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(f.meta)))
	return bytes.Join([][]byte{hdr[:], f.meta, f.body}, nil)
}

// Every prefix of a stream is refused with an *Error, never a panic.
func TestEveryTruncationIsRefused(t *testing.T) {
	good := stream(t, sampledata.Customer360Schema, customers(t, 300, 100))
	for n := 0; n < len(good); n += 1 + n/200 {
		e := refused(t, bytes.NewReader(good[:n]), Limits{})
		if e.Offset > int64(n) {
			t.Fatalf("prefix of %d bytes: error at byte %d", n, e.Offset)
		}
	}
}

// forged answers a copy of b with f's metadata patched by fix.
func forged(b []byte, f frame, fix func(meta, body []byte)) []byte {
	out := bytes.Clone(b)
	meta := out[f.start+8 : f.start+8+len(f.meta)]
	fix(meta, out[f.start+8+len(f.meta):f.start+8+len(f.meta)+len(f.body)])
	return out
}

func TestRefusesForgedCounts(t *testing.T) {
	recs := customers(t, 2000, 1000)
	good := stream(t, sampledata.Customer360Schema, recs)
	fs := frames(t, good)

	t.Run("a schema claiming two billion fields", func(t *testing.T) {
		in := forged(good, fs[0], func(meta, _ []byte) {
			msg, _ := parseMessage(meta)
			pos, _ := msg.header.target(schemaFields)
			binary.LittleEndian.PutUint32(meta[pos:], 0x7fffffff)
		})
		e := refused(t, bytes.NewReader(in), Limits{})
		if !strings.Contains(e.Error(), "claims 2147483647 elements") {
			t.Errorf("got %v", e)
		}
	})
	batch := fs[len(fs)-1]
	t.Run("a batch claiming a billion rows", func(t *testing.T) {
		in := forged(good, batch, func(meta, _ []byte) {
			msg, _ := parseMessage(meta)
			pos, _ := msg.header.field(batchLength)
			binary.LittleEndian.PutUint64(meta[pos:], 1<<30)
		})
		if e := refused(t, bytes.NewReader(in), Limits{}); !strings.Contains(e.Error(), "claims 1073741824 rows") {
			t.Errorf("got %v", e)
		}
	})
	t.Run("a buffer outside the body", func(t *testing.T) {
		in := forged(good, batch, func(meta, _ []byte) {
			msg, _ := parseMessage(meta)
			start, _, _ := msg.header.vector(batchBuffers, 16)
			binary.LittleEndian.PutUint64(meta[start+16+8:], 1<<40)
		})
		if e := refused(t, bytes.NewReader(in), Limits{}); !strings.Contains(e.Error(), "outside the") || e.Batch != 2 {
			t.Errorf("got %v", e)
		}
	})
	// arrow-go reads nodes and buffers by index, past a vector's end: a
	// vector shorter than the schema needs is refused (FuzzPipeline found
	// one that made it allocate a forged 200 TB).
	for _, c := range []struct {
		name string
		slot int
		want string
	}{
		{"fewer buffers than the schema needs", batchBuffers, "buffers for a schema of"},
		{"fewer field nodes than the schema has", batchNodes, "field nodes for a schema of"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := forged(good, batch, func(meta, _ []byte) {
				msg, _ := parseMessage(meta)
				pos, _ := msg.header.target(c.slot)
				binary.LittleEndian.PutUint32(meta[pos:], 3)
			})
			if e := refused(t, bytes.NewReader(in), Limits{}); !strings.Contains(e.Error(), c.want) || e.Batch != 2 {
				t.Errorf("got %v", e)
			}
		})
	}
	// The email column's offsets: buffers are id (validity, values), then
	// email (validity, offsets, data).
	emailOffsets := func(meta []byte) (off, length int64) {
		msg, _ := parseMessage(meta)
		start, _, _ := msg.header.vector(batchBuffers, 16)
		off, _ = fbuf(meta).i64(start + 16*3)
		length, _ = fbuf(meta).i64(start + 16*3 + 8)
		return off, length
	}
	t.Run("string offsets past the data", func(t *testing.T) {
		in := forged(good, batch, func(meta, body []byte) {
			off, length := emailOffsets(meta)
			binary.LittleEndian.PutUint32(body[off+length-4:], 0x7ffffff0)
		})
		if e := refused(t, bytes.NewReader(in), Limits{}); !strings.Contains(e.Error(), "out of bounds") || e.Batch != 2 {
			t.Errorf("got %v", e)
		}
	})
	t.Run("string offsets going backwards", func(t *testing.T) {
		// Reading the values would slice backwards and panic; full
		// validation refuses the batch first.
		in := forged(good, batch, func(meta, body []byte) {
			off, length := emailOffsets(meta)
			last := binary.LittleEndian.Uint32(body[off+length-4:])
			binary.LittleEndian.PutUint32(body[off+4:], last)
		})
		if e := refused(t, bytes.NewReader(in), Limits{}); !strings.Contains(e.Error(), "invalid values") || e.Batch != 2 {
			t.Errorf("got %v", e)
		}
	})
	t.Run("a compressed buffer declaring a terabyte", func(t *testing.T) {
		lz := stream(t, sampledata.Customer360Schema, recs, ipc.WithLZ4())
		lf := frames(t, lz)
		last := lf[len(lf)-1]
		in := forged(lz, last, func(meta, body []byte) {
			msg, _ := parseMessage(meta)
			start, n, _ := msg.header.vector(batchBuffers, 16)
			for i := range n {
				off, _ := fbuf(meta).i64(start + 16*i)
				length, _ := fbuf(meta).i64(start + 16*i + 8)
				if length >= 8 {
					binary.LittleEndian.PutUint64(body[off:], 1<<40)
					return
				}
			}
		})
		if e := refused(t, bytes.NewReader(in), Limits{}); !strings.Contains(e.Error(), "decompresses to more than") {
			t.Errorf("got %v", e)
		}
		// Unforged, the compressed stream reads.
		got, err := readAll(t, bytes.NewReader(lz), Limits{}, nil)
		if err != nil || len(got) != len(recs) {
			t.Fatalf("compressed stream: %d batches, %v", len(got), err)
		}
		for _, r := range got {
			r.Release()
		}
	})
}

type failing struct {
	r   io.Reader
	err error
}

func (f *failing) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

// A source that fails is not the caller's data at fault: its error comes
// back as it is.
func TestSourceErrorsPassThrough(t *testing.T) {
	good := stream(t, sampledata.Customer360Schema, customers(t, 2000, 1000))
	cut := errors.New("stream cancelled")
	for _, n := range []int{0, 100, len(good) / 2, len(good) - 8, len(good)} {
		_, err := readAll(t, &failing{r: bytes.NewReader(good[:n]), err: cut}, Limits{}, nil)
		var e *Error
		if !errors.Is(err, cut) || errors.As(err, &e) {
			t.Errorf("source failing after %d bytes: got %v, want the source's error", n, err)
		}
	}
}

// A decimal type arrow-go decodes but cannot format (found by
// FuzzPipeline: decimal(181, -1246382844) panicked in the CSV writer) is
// refused with the schema, naming the column.
func TestRefusesDecimalsOutOfRange(t *testing.T) {
	for _, c := range []struct {
		dt   arrow.DataType
		want string
	}{
		{&arrow.Decimal128Type{Precision: 181, Scale: 2}, `column "amount": decimal precision 181 is not between 1 and 38`},
		{&arrow.Decimal128Type{Precision: 10, Scale: -1246382844}, `scale -1246382844 is not between -38 and 38`},
		{arrow.StructOf(arrow.Field{Name: "v", Type: &arrow.Decimal256Type{Precision: 77, Scale: 0}}), `column "amount.v": decimal256 precision 77`},
		{arrow.ListOf(&arrow.Decimal128Type{Precision: 0, Scale: 0}), `precision 0 is not between 1 and 38`},
	} {
		schema := arrow.NewSchema([]arrow.Field{{Name: "amount", Type: c.dt}}, nil)
		e := refused(t, bytes.NewReader(stream(t, schema, nil)), Limits{})
		if !strings.Contains(e.Error(), c.want) {
			t.Errorf("%s: error %q does not say %q", c.dt, e, c.want)
		}
	}
	// At the bounds, decimals are read.
	schema := arrow.NewSchema([]arrow.Field{{Name: "a", Type: &arrow.Decimal128Type{Precision: 38, Scale: -38}}, {Name: "b", Type: &arrow.Decimal256Type{Precision: 76, Scale: 76}}}, nil)
	r, err := NewReader(bytes.NewReader(stream(t, schema, nil)), Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Release()
}

// A string that is not valid UTF-8 is refused naming the column and row,
// never with the value itself (#22: arrow-go's message quoted a 3 MiB
// value whole, and it reached the caller and the logs).
func TestInvalidUTF8IsRefusedWithoutItsValue(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "note", Type: arrow.BinaryTypes.String}}, nil)
	secret := "SECRET-" + strings.Repeat("x", 1<<20) + "\xff\xfe"
	ids := array.NewInt64Builder(memory.DefaultAllocator)
	ids.AppendValues([]int64{1, 2}, nil)
	// Built as binary, then read as strings: the builder would not check,
	// a producer in another language might not either.
	bin := array.NewBinaryBuilder(memory.DefaultAllocator, arrow.BinaryTypes.Binary)
	bin.AppendValues([][]byte{[]byte("fine"), []byte(secret)}, nil)
	bd := bin.NewArray().Data()
	notes := array.MakeFromData(array.NewData(arrow.BinaryTypes.String, bd.Len(), bd.Buffers(), nil, 0, 0))
	rec := array.NewRecordBatch(schema, []arrow.Array{ids.NewArray(), notes}, 2)
	b := stream(t, schema, []arrow.RecordBatch{rec})
	_, err := readAll(t, bytes.NewReader(b), Limits{}, nil)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "note") || !strings.Contains(err.Error(), "index 1") || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Fatalf("got %v, want the column and row named", err)
	}
	if strings.Contains(err.Error(), "SECRET") || len(err.Error()) > 500 {
		t.Fatalf("the error quotes the value (%d bytes): %.200s", len(err.Error()), err)
	}
}

// chunked is a Slicer over separately allocated chunks, as a gRPC stream's
// messages are.
type chunked struct {
	chunks [][]byte
	cur    []byte
	sliced int   // bodies answered from the chunks themselves
	err    error // answered once the chunks are spent, instead of io.EOF
}

func (c *chunked) next() bool {
	for len(c.cur) == 0 {
		if len(c.chunks) == 0 {
			return false
		}
		c.cur, c.chunks = c.chunks[0], c.chunks[1:]
	}
	return true
}

func (c *chunked) Read(p []byte) (int, error) {
	if !c.next() {
		if c.err != nil {
			return 0, c.err
		}
		return 0, io.EOF
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

func (c *chunked) Slice(n int) ([]byte, error) {
	if !c.next() {
		return nil, c.err
	}
	if len(c.cur) < n {
		return nil, nil
	}
	b := c.cur[:n:n]
	c.cur = c.cur[n:]
	c.sliced++
	return b, nil
}

// within reports whether b lies inside one of chunks.
func within(b []byte, chunks [][]byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	for _, c := range chunks {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(c)))
		if p >= start && p+uintptr(len(b)) <= start+uintptr(len(c)) {
			return true
		}
	}
	return false
}

// countingBudget is a Budget that counts what is held.
type countingBudget struct{ held int64 }

func (b *countingBudget) Acquire(n int64) error { b.held += n; return nil }
func (b *countingBudget) Release(n int64)       { b.held -= n }

// A body that lies whole in one of a Slicer's buffers is decoded from it,
// not copied (#26); a body cut across buffers, or in a buffer arrow-go
// could not read in place (not 8-byte aligned), is copied; the batches are
// the ones written either way, and the budget is given back.
func TestSlicerBodiesAreNotCopied(t *testing.T) {
	recs := customers(t, 5000, 1200)
	b := stream(t, sampledata.Customer360Schema, recs)
	fs := frames(t, b)
	own := func(p []byte) []byte { return append([]byte(nil), p...) }
	// One chunk per message, as deliverclient's aligned cuts and Flight's
	// FlightData give them.
	var whole [][]byte
	for i, f := range fs {
		end := len(b)
		if i+1 < len(fs) {
			end = fs[i+1].start
		}
		whole = append(whole, own(b[f.start:end]))
	}
	// The same, each chunk one byte into its allocation.
	var misaligned [][]byte
	for _, c := range whole {
		misaligned = append(misaligned, append([]byte{0}, c...)[1:])
	}
	var cut [][]byte
	for off := 0; off < len(b); off += 100_000 {
		cut = append(cut, own(b[off:min(off+100_000, len(b))]))
	}
	for _, c := range []struct {
		name      string
		chunks    [][]byte
		inChunks  bool // every batch's values lie in the chunks
		minSliced int
	}{
		{"one message per chunk", whole, true, len(recs)},
		{"misaligned", misaligned, false, len(recs)},
		// The 1200-row batches span chunks (the last, small one may not).
		{"cut anywhere", cut, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := &chunked{chunks: slices.Clone(c.chunks)}
			budget := &countingBudget{}
			got, err := readAll(t, src, Limits{Budget: budget}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(recs) {
				t.Fatalf("read %d batches, want %d", len(got), len(recs))
			}
			if src.sliced < c.minSliced {
				t.Errorf("%d bodies sliced, want at least %d", src.sliced, c.minSliced)
			}
			for i := range got {
				if !array.RecordEqual(got[i], recs[i]) {
					t.Errorf("batch %d differs from the one written", i)
				}
				values := got[i].Column(0).Data().Buffers()[1].Bytes()
				if in := within(values, c.chunks); in != c.inChunks && got[i].NumRows() == 1200 {
					t.Errorf("batch %d: its first column's values in the chunks: %v, want %v", i, in, c.inChunks)
				}
				got[i].Release()
			}
			if budget.held != 0 {
				t.Errorf("%d bytes of the budget still held once the batches are released", budget.held)
			}
		})
	}
	t.Run("source error", func(t *testing.T) {
		broke := errors.New("stream broke")
		src := &chunked{chunks: [][]byte{own(b[:fs[1].start+8+len(fs[1].meta)])}, err: broke}
		budget := &countingBudget{}
		_, err := readAll(t, src, Limits{Budget: budget}, nil)
		var e *Error
		if !errors.Is(err, broke) || errors.As(err, &e) {
			t.Errorf("got %v, want the source's error", err)
		}
		if budget.held != 0 {
			t.Errorf("%d bytes of the budget still held after the source failed", budget.held)
		}
	})
}
