package arrowfmt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
)

// QuoteMode says which delimited fields are quoted.
type QuoteMode int

// The five quote modes users know.
const (
	// QuoteMinimal quotes fields with the delimiter, a quote, CR or LF, and
	// empty strings (so that they differ from NULL).
	QuoteMinimal QuoteMode = iota
	// QuoteAll quotes every field, NULLs included (`""` with an empty null
	// text), as Python's QUOTE_ALL does: readers tell NULLs apart only by
	// the null text (DuckDB's allow_quoted_nulls).
	QuoteAll
	// QuoteAllNonNull quotes every non-NULL field and leaves NULLs bare, as
	// Python's QUOTE_NOTNULL does.
	QuoteAllNonNull
	// QuoteNonNumeric quotes every non-NULL field that is not a number.
	QuoteNonNumeric
	// QuoteNone quotes nothing: special characters are escaped with the
	// escape character, and without one a value that holds one is an error.
	QuoteNone
)

// DelimitedOptions configure a delimited writer.
type DelimitedOptions struct {
	// Delimiter separates fields: ',' when zero.
	Delimiter rune
	// Header writes the column names first.
	Header bool
	// Escape escapes a quote inside a quoted field (and, in QuoteNone,
	// every special character); zero doubles the quote as RFC 4180 does.
	Escape rune
	// Quote is the quote mode.
	Quote QuoteMode
	// CRLF ends lines with \r\n instead of \n.
	CRLF bool
	// NullValue is written for NULL, unquoted (quoted in QuoteAll); empty
	// by default. A value that reads the same is quoted so that it stays a
	// value; in QuoteNone, where nothing is quoted, it is an error.
	NullValue string
	// RowNumber, when set, names a first column numbering rows from 1.
	RowNumber string
}

// Delimited writes record batches as delimited text.
type Delimited struct {
	w       *bufio.Writer
	opts    DelimitedOptions
	schema  *arrow.Schema
	cols    []appender
	numeric []bool
	eol     string
	row     int64
	line    []byte
	cell    []byte
	wrote   bool
	// ascii says every special character is ASCII, marked in specialByte.
	ascii       bool
	specialByte [256]bool
}

const quote = '"'

// NewDelimited checks schema and answers a writer to w. Nothing is written
// until the first batch (or Close, for a header-only file).
func NewDelimited(w io.Writer, schema *arrow.Schema, opts DelimitedOptions) (*Delimited, error) {
	if opts.Delimiter == 0 {
		opts.Delimiter = ','
	}
	switch opts.Delimiter {
	case quote, '\r', '\n', utf8.RuneError:
		return nil, fmt.Errorf("delimiter %q cannot be a quote, CR or LF", opts.Delimiter)
	}
	if opts.Escape == opts.Delimiter || opts.Escape == '\r' || opts.Escape == '\n' {
		return nil, fmt.Errorf("escape character %q cannot be the delimiter, CR or LF", opts.Escape)
	}
	d := &Delimited{w: bufio.NewWriterSize(w, 64<<10), opts: opts, schema: schema, eol: "\n"}
	if opts.CRLF {
		d.eol = "\r\n"
	}
	if d.ascii = opts.Delimiter >= 0 && opts.Delimiter < utf8.RuneSelf && opts.Escape >= 0 && opts.Escape < utf8.RuneSelf; d.ascii {
		for _, c := range []rune{opts.Delimiter, quote, '\r', '\n'} {
			d.specialByte[c] = true
		}
		if opts.Escape != 0 {
			d.specialByte[opts.Escape] = true
		}
	}
	if err := checkNames(schema, false, "delimited text"); err != nil {
		return nil, err
	}
	for _, f := range schema.Fields() {
		a, err := textAppender(f.Type)
		if err != nil {
			return nil, &UnsupportedError{Column: f.Name, Type: f.Type, Format: "delimited text"}
		}
		if opts.Quote == QuoteNone && opts.Escape == 0 && jsonText(f.Type) {
			// Written as JSON text, which holds quotes (and delimiters):
			// certain to fail on the first value, so refused before any.
			return nil, &UnsupportedError{Column: f.Name, Type: f.Type, Format: "delimited text with quote mode none and no escape character (its values are JSON text, which holds quotes)"}
		}
		d.cols = append(d.cols, a)
		d.numeric = append(d.numeric, isNumeric(f.Type))
	}
	return d, nil
}

func (d *Delimited) special(s []byte) bool {
	if d.ascii {
		// Every special character is ASCII, and an ASCII byte is never
		// part of a multi-byte UTF-8 sequence: bytes suffice.
		for _, c := range s {
			if d.specialByte[c] {
				return true
			}
		}
		return false
	}
	for _, r := range string(s) {
		if r == d.opts.Delimiter || r == quote || r == '\r' || r == '\n' || (d.opts.Escape != 0 && r == d.opts.Escape) {
			return true
		}
	}
	return false
}

// field appends one non-null field to the line under the quote mode.
func (d *Delimited) field(text []byte, numeric bool, column string) error {
	q := false
	switch d.opts.Quote {
	case QuoteAll, QuoteAllNonNull:
		q = true
	case QuoteNonNumeric:
		q = !numeric || d.special(text) || string(text) == d.opts.NullValue
	case QuoteMinimal:
		q = len(text) == 0 || d.special(text) || string(text) == d.opts.NullValue
	case QuoteNone:
		start := len(d.line)
		if !d.special(text) {
			d.line = append(d.line, text...)
		} else {
			if d.opts.Escape == 0 {
				return &ValueError{Column: column, Row: d.row, Reason: "the value holds the delimiter, a quote or a line break, and quote mode none has no escape character to escape it"}
			}
			for _, r := range string(text) {
				if r == d.opts.Delimiter || r == quote || r == '\r' || r == '\n' || r == d.opts.Escape {
					d.line = utf8.AppendRune(d.line, d.opts.Escape)
				}
				d.line = utf8.AppendRune(d.line, r)
			}
		}
		if string(d.line[start:]) == d.opts.NullValue {
			return &ValueError{Column: column, Row: d.row, Reason: fmt.Sprintf("the value is written exactly as the null text %q, and quote mode none cannot quote it: set another null text or quote mode", d.opts.NullValue)}
		}
		return nil
	}
	if !q {
		d.line = append(d.line, text...)
		return nil
	}
	d.quoted(text)
	return nil
}

// quoted appends text in quotes, escaping quotes (and the escape
// character) inside.
func (d *Delimited) quoted(text []byte) {
	d.line = append(d.line, quote)
	for _, r := range string(text) {
		switch {
		case r == quote && d.opts.Escape == 0:
			d.line = append(d.line, quote, quote)
			continue
		case r == quote || (d.opts.Escape != 0 && r == d.opts.Escape):
			d.line = utf8.AppendRune(d.line, d.opts.Escape)
		}
		d.line = utf8.AppendRune(d.line, r)
	}
	d.line = append(d.line, quote)
}

func (d *Delimited) header() error {
	d.wrote = true
	if !d.opts.Header {
		return nil
	}
	d.line = d.line[:0]
	names := d.schema.Fields()
	if d.opts.RowNumber != "" {
		if err := d.field([]byte(d.opts.RowNumber), false, d.opts.RowNumber); err != nil {
			return err
		}
	}
	for k, f := range names {
		if k > 0 || d.opts.RowNumber != "" {
			d.line = utf8.AppendRune(d.line, d.opts.Delimiter)
		}
		if err := d.field([]byte(f.Name), false, f.Name); err != nil {
			return err
		}
	}
	d.line = append(d.line, d.eol...)
	_, err := d.w.Write(d.line)
	return err
}

// Write appends the rows of rec, whose schema must be the writer's.
func (d *Delimited) Write(rec arrow.RecordBatch) error {
	if !rec.Schema().Equal(d.schema) {
		return errors.New("the batch's schema differs from the stream's")
	}
	if err := checkTextYears(rec, d.row); err != nil {
		return err
	}
	if !d.wrote {
		if err := d.header(); err != nil {
			return err
		}
	}
	cols := rec.Columns()
	fields := d.schema.Fields()
	for i := 0; i < int(rec.NumRows()); i++ {
		d.row++
		d.line = d.line[:0]
		if d.opts.RowNumber != "" {
			d.line = strconv.AppendInt(d.line, d.row, 10)
		}
		for k, col := range cols {
			if k > 0 || d.opts.RowNumber != "" {
				d.line = utf8.AppendRune(d.line, d.opts.Delimiter)
			}
			if isNull(col, i) {
				if d.opts.Quote == QuoteAll {
					d.quoted([]byte(d.opts.NullValue))
				} else {
					d.line = append(d.line, d.opts.NullValue...)
				}
				continue
			}
			d.cell = d.cols[k](d.cell[:0], col, i)
			if err := d.field(d.cell, d.numeric[k], fields[k].Name); err != nil {
				return err
			}
		}
		d.line = append(d.line, d.eol...)
		if _, err := d.w.Write(d.line); err != nil {
			return err
		}
	}
	return nil
}

// Rows answers how many rows were written.
func (d *Delimited) Rows() int64 { return d.row }

// Close writes the header of an empty output and flushes; it does not close
// the underlying writer.
// Flush writes what is buffered, so that a caller counting bytes (a
// split by size) sees every row written so far.
func (d *Delimited) Flush() error { return d.w.Flush() }

func (d *Delimited) Close() error {
	if !d.wrote {
		if err := d.header(); err != nil {
			return err
		}
	}
	return d.w.Flush()
}

// jsonText reports whether values of dt are written as JSON text: nested
// types, whose text always holds quotes or brackets and commas.
func jsonText(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.STRUCT, arrow.MAP, arrow.LIST, arrow.LARGE_LIST, arrow.FIXED_SIZE_LIST, arrow.LIST_VIEW, arrow.LARGE_LIST_VIEW, arrow.DENSE_UNION, arrow.SPARSE_UNION:
		return true
	case arrow.EXTENSION:
		return jsonText(dt.(arrow.ExtensionType).StorageType())
	}
	return false
}
