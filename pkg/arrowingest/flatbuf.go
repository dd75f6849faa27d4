package arrowingest

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A bounded reader of FlatBuffers, the encoding of Arrow IPC metadata.
// arrow-go decodes metadata trusting every offset and count in it; these
// helpers check each one against the buffer before it is followed, so that
// a crafted message is refused instead of crashing the process or sizing
// an allocation from a count nobody wrote.

var errOutOfBounds = errors.New("metadata points outside its own bytes")

type fbuf []byte

func (b fbuf) u8(pos int) (uint8, error) {
	if pos < 0 || pos+1 > len(b) {
		return 0, errOutOfBounds
	}
	return b[pos], nil
}

func (b fbuf) u16(pos int) (uint16, error) {
	if pos < 0 || pos+2 > len(b) {
		return 0, errOutOfBounds
	}
	return binary.LittleEndian.Uint16(b[pos:]), nil
}

func (b fbuf) u32(pos int) (uint32, error) {
	if pos < 0 || pos+4 > len(b) {
		return 0, errOutOfBounds
	}
	return binary.LittleEndian.Uint32(b[pos:]), nil
}

func (b fbuf) i64(pos int) (int64, error) {
	if pos < 0 || pos+8 > len(b) {
		return 0, errOutOfBounds
	}
	return int64(binary.LittleEndian.Uint64(b[pos:])), nil
}

// table is a FlatBuffers table: its position and its vtable's.
type table struct {
	b             fbuf
	pos, vt, vlen int
}

// root answers the buffer's root table.
func (b fbuf) root() (table, error) {
	off, err := b.u32(0)
	if err != nil {
		return table{}, err
	}
	return b.tableAt(int(off))
}

func (b fbuf) tableAt(pos int) (table, error) {
	if pos < 0 || pos > len(b) {
		return table{}, errOutOfBounds
	}
	soff, err := b.u32(pos)
	if err != nil {
		return table{}, err
	}
	vt := pos - int(int32(soff))
	vlen, err := b.u16(vt)
	if err != nil {
		return table{}, err
	}
	tlen, err := b.u16(vt + 2)
	if err != nil {
		return table{}, err
	}
	if vlen < 4 || vlen%2 != 0 || vt+int(vlen) > len(b) || pos+int(tlen) > len(b) {
		return table{}, errOutOfBounds
	}
	return table{b: b, pos: pos, vt: vt, vlen: int(vlen)}, nil
}

// field answers the position of field slot i, or 0 when it is absent.
func (t table) field(slot int) (int, error) {
	voff := 4 + 2*slot
	if voff+2 > t.vlen {
		return 0, nil
	}
	off, err := t.b.u16(t.vt + voff)
	if err != nil || off == 0 {
		return 0, err
	}
	return t.pos + int(off), nil
}

func (t table) u8(slot int) (uint8, error) {
	pos, err := t.field(slot)
	if err != nil || pos == 0 {
		return 0, err
	}
	return t.b.u8(pos)
}

func (t table) i16(slot int) (int16, error) {
	pos, err := t.field(slot)
	if err != nil || pos == 0 {
		return 0, err
	}
	v, err := t.b.u16(pos)
	return int16(v), err
}

func (t table) i64(slot int) (int64, error) {
	pos, err := t.field(slot)
	if err != nil || pos == 0 {
		return 0, err
	}
	return t.b.i64(pos)
}

// target follows the offset stored in slot, answering 0 when absent.
func (t table) target(slot int) (int, error) {
	pos, err := t.field(slot)
	if err != nil || pos == 0 {
		return 0, err
	}
	off, err := t.b.u32(pos)
	if err != nil {
		return 0, err
	}
	if off == 0 {
		return 0, errOutOfBounds
	}
	return pos + int(off), nil
}

// table answers the table in slot; ok is false when it is absent.
func (t table) table(slot int) (table, bool, error) {
	pos, err := t.target(slot)
	if err != nil || pos == 0 {
		return table{}, false, err
	}
	sub, err := t.b.tableAt(pos)
	return sub, err == nil, err
}

// vector answers the start and length of the vector in slot, after
// checking that its elemSize-byte elements lie inside the buffer.
func (t table) vector(slot, elemSize int) (start, n int, err error) {
	pos, err := t.target(slot)
	if err != nil || pos == 0 {
		return 0, 0, err
	}
	count, err := t.b.u32(pos)
	if err != nil {
		return 0, 0, err
	}
	start = pos + 4
	if int64(count)*int64(elemSize) > int64(len(t.b)-start) {
		return 0, 0, fmt.Errorf("a vector claims %d elements in %d bytes", count, len(t.b)-start)
	}
	return start, int(count), nil
}

// tables answers the tables of the vector of offsets in slot.
func (t table) tables(slot int) ([]table, error) {
	start, n, err := t.vector(slot, 4)
	if err != nil {
		return nil, err
	}
	out := make([]table, 0, n)
	for i := range n {
		pos := start + 4*i
		off, err := t.b.u32(pos)
		if err != nil {
			return nil, err
		}
		sub, err := t.b.tableAt(pos + int(off))
		if err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	return out, nil
}

// str checks the string in slot lies inside the buffer.
func (t table) str(slot int) error {
	_, _, err := t.vector(slot, 1)
	return err
}
