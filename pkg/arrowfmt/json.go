package arrowfmt

import (
	"bufio"
	"errors"
	"io"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
)

// JSONOptions configure a JSON or NDJSON writer.
type JSONOptions struct {
	// Lines writes NDJSON, one object per line; otherwise one JSON array.
	Lines bool
	// CRLF ends lines with \r\n instead of \n.
	CRLF bool
	// RowNumber, when set, names a first member numbering rows from 1.
	RowNumber string
}

// JSON writes record batches as JSON objects, one per row.
type JSON struct {
	w      *bufio.Writer
	opts   JSONOptions
	schema *arrow.Schema
	cols   []appender
	keys   [][]byte
	rowKey []byte
	eol    string
	row    int64
	buf    []byte
	opened bool
}

// NewJSON checks schema and answers a writer to w.
func NewJSON(w io.Writer, schema *arrow.Schema, opts JSONOptions) (*JSON, error) {
	j := &JSON{w: bufio.NewWriterSize(w, 64<<10), opts: opts, schema: schema, eol: "\n"}
	if opts.CRLF {
		j.eol = "\r\n"
	}
	format := "JSON"
	if opts.Lines {
		format = "NDJSON"
	}
	if err := checkNames(schema, true, format); err != nil {
		return nil, err
	}
	for k, f := range schema.Fields() {
		a, err := jsonAppender(f.Type)
		if err != nil {
			return nil, &UnsupportedError{Column: f.Name, Type: f.Type, Format: format}
		}
		j.cols = append(j.cols, a)
		key := appendJSONString(nil, f.Name)
		if k > 0 || opts.RowNumber != "" {
			key = append([]byte{','}, key...)
		}
		j.keys = append(j.keys, append(key, ':'))
	}
	if opts.RowNumber != "" {
		j.rowKey = append(appendJSONString(nil, opts.RowNumber), ':')
	}
	return j, nil
}

// Write appends the rows of rec, whose schema must be the writer's.
func (j *JSON) Write(rec arrow.RecordBatch) error {
	if !rec.Schema().Equal(j.schema) {
		return errors.New("the batch's schema differs from the stream's")
	}
	if err := checkTextYears(rec, j.row); err != nil {
		return err
	}
	cols := rec.Columns()
	for i := 0; i < int(rec.NumRows()); i++ {
		j.buf = j.buf[:0]
		switch {
		case j.opts.Lines:
		case !j.opened:
			j.buf = append(j.buf, '[')
			j.buf = append(j.buf, j.eol...)
			j.opened = true
		default:
			j.buf = append(j.buf, ',')
			j.buf = append(j.buf, j.eol...)
		}
		j.row++
		j.buf = append(j.buf, '{')
		if j.rowKey != nil {
			j.buf = append(j.buf, j.rowKey...)
			j.buf = strconv.AppendInt(j.buf, j.row, 10)
		}
		for k, col := range cols {
			j.buf = append(j.buf, j.keys[k]...)
			j.buf = j.cols[k](j.buf, col, i)
		}
		j.buf = append(j.buf, '}')
		if j.opts.Lines {
			j.buf = append(j.buf, j.eol...)
		}
		if _, err := j.w.Write(j.buf); err != nil {
			return err
		}
	}
	return nil
}

// Rows answers how many rows were written.
func (j *JSON) Rows() int64 { return j.row }

// Close ends the array (JSON) and flushes; it does not close the
// underlying writer.
// Flush writes what is buffered, so that a caller counting bytes (a
// split by size) sees every row written so far.
func (j *JSON) Flush() error { return j.w.Flush() }

func (j *JSON) Close() error {
	if !j.opts.Lines {
		end := j.eol + "]" + j.eol
		if !j.opened {
			end = "[]" + j.eol
		}
		if _, err := j.w.WriteString(end); err != nil {
			return err
		}
	}
	return j.w.Flush()
}
