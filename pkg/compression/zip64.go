package compression

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"time"

	"github.com/klauspost/compress/flate"
)

// zip64Writer streams one deflated entry as a ZIP archive in Zip64 form
// from the first byte: the local header already carries a Zip64 extra
// field, so readers that trust local headers (streaming unzippers) handle
// entries over 4 GiB. archive/zip decides on Zip64 only at the end, when
// the local header is long written, which is why "Use Zip64" needs this
// writer (PKWARE APPNOTE 6.3.10, sections 4.3.7 to 4.3.16 and 4.5.3).
type zip64Writer struct {
	out      *countWriter
	name     string
	modified time.Time
	deflate  *flate.Writer
	crc      hash.Hash32
	raw      int64
	start    int64 // where the compressed data begins
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

const (
	zipVersion45     = 45     // Zip64
	zipFlags         = 0x0808 // data descriptor follows; name is UTF-8
	zipDeflate       = 8
	zip64ExtraID     = 0x0001
	uint32max        = 0xffffffff
	zipVersionMadeBy = 3<<8 | zipVersion45 // Unix, 4.5
)

func newZip64(w io.Writer, o Options) (*zip64Writer, error) {
	z := &zip64Writer{out: &countWriter{w: w}, name: o.Name, modified: o.Modified, crc: crc32.NewIEEE()}
	if err := z.localHeader(); err != nil {
		return nil, err
	}
	z.start = z.out.n
	fw, err := flate.NewWriter(z.out, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	z.deflate = fw
	return z, nil
}

// dosTime encodes t as MS-DOS date and time.
func dosTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	date = uint16(t.Day() + int(t.Month())<<5 + (t.Year()-1980)<<9)
	tm = uint16(t.Second()/2 + t.Minute()<<5 + t.Hour()<<11)
	return date, tm
}

type buf []byte

func (b buf) u16(v uint16) buf { return binary.LittleEndian.AppendUint16(b, v) }
func (b buf) u32(v uint32) buf { return binary.LittleEndian.AppendUint32(b, v) }
func (b buf) u64(v uint64) buf { return binary.LittleEndian.AppendUint64(b, v) }

func (z *zip64Writer) localHeader() error {
	date, tm := dosTime(z.modified)
	// Sizes are unknown while streaming: 0xffffffff here, zero in the
	// Zip64 extra, and the real ones in the data descriptor.
	extra := buf(nil).u16(zip64ExtraID).u16(16).u64(0).u64(0)
	b := buf(nil).u32(0x04034b50).u16(zipVersion45).u16(zipFlags).u16(zipDeflate).u16(tm).u16(date).
		u32(0).u32(uint32max).u32(uint32max).u16(uint16(len(z.name))).u16(uint16(len(extra)))
	b = append(append(b, z.name...), extra...)
	_, err := z.out.Write(b)
	return err
}

func (z *zip64Writer) Write(p []byte) (int, error) {
	n, err := z.deflate.Write(p)
	z.crc.Write(p[:n])
	z.raw += int64(n)
	return n, err
}

func (z *zip64Writer) Close() error {
	if err := z.deflate.Close(); err != nil {
		return fmt.Errorf("zip: %w", err)
	}
	const localOffset = 0
	compressed := uint64(z.out.n - z.start)
	crc := z.crc.Sum32()
	// Data descriptor with 8-byte sizes, as Zip64 requires.
	dd := buf(nil).u32(0x08074b50).u32(crc).u64(compressed).u64(uint64(z.raw))
	if _, err := z.out.Write(dd); err != nil {
		return err
	}
	cdStart := z.out.n
	date, tm := dosTime(z.modified)
	extra := buf(nil).u16(zip64ExtraID).u16(24).u64(uint64(z.raw)).u64(compressed).u64(localOffset)
	cd := buf(nil).u32(0x02014b50).u16(zipVersionMadeBy).u16(zipVersion45).u16(zipFlags).u16(zipDeflate).u16(tm).u16(date).
		u32(crc).u32(uint32max).u32(uint32max).u16(uint16(len(z.name))).u16(uint16(len(extra))).u16(0).
		u16(0).u16(0).u32(0o100644 << 16).u32(uint32max)
	cd = append(append(cd, z.name...), extra...)
	if _, err := z.out.Write(cd); err != nil {
		return err
	}
	cdSize := uint64(z.out.n - cdStart)
	eocd64 := z.out.n
	end := buf(nil).
		// Zip64 end of central directory record.
		u32(0x06064b50).u64(44).u16(zipVersionMadeBy).u16(zipVersion45).u32(0).u32(0).u64(1).u64(1).u64(cdSize).u64(uint64(cdStart)).
		// Zip64 end of central directory locator.
		u32(0x07064b50).u32(0).u64(uint64(eocd64)).u32(1).
		// End of central directory: the Zip64 record holds the real values.
		u32(0x06054b50).u16(0).u16(0).u16(1).u16(1).u32(uint32(min(cdSize, uint32max))).u32(uint32max).u16(0)
	_, err := z.out.Write(end)
	return err
}
