package arrowfmt_test

import (
	"bytes"
	"encoding/csv"
	"testing"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// FuzzDelimited tries option sets and values: NewDelimited either refuses
// the options, or its output reads back, through encoding/csv, as the
// values written (for the RFC 4180 dialect encoding/csv reads: quotes
// doubled, no escape character).
func FuzzDelimited(f *testing.F) {
	f.Add(',', 0, "a,b", `q"uote`, "")
	f.Add('\t', 1, "tab\there", "line\nbreak", `\N`)
	f.Add('|', 3, "", "plain", "NULL")
	f.Add(';', 2, "x;y", "crlf\r\n", "")
	f.Fuzz(func(t *testing.T, delim rune, mode int, v1, v2, null string) {
		opts := arrowfmt.DelimitedOptions{Delimiter: delim, Quote: arrowfmt.QuoteMode(uint(mode) % 4), NullValue: null, Header: true}
		schema := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.BinaryTypes.String, Nullable: true}, {Name: "b", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
		var out bytes.Buffer
		w, err := arrowfmt.NewDelimited(&out, schema, opts)
		if err != nil {
			return // refused options are fine; a panic is not
		}
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		defer b.Release()
		b.Field(0).(*array.StringBuilder).Append(v1)
		b.Field(1).(*array.StringBuilder).Append(v2)
		rec := b.NewRecordBatch()
		defer rec.Release()
		if err := w.Write(rec); err != nil {
			t.Fatalf("write: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// encoding/csv reads only delimiters it supports and values without
		// lone CRs or invalid UTF-8; beyond that the writer must still not
		// panic, which reaching here shows.
		if !validCSVComma(delim) || !utf8.ValidString(v1) || !utf8.ValidString(v2) || !utf8.ValidString(null) || bytes.Contains([]byte(v1+v2), []byte("\r")) || null != "" && (null == v1 || null == v2) {
			return
		}
		written := out.String()
		rd := csv.NewReader(&out)
		rd.Comma = delim
		records, err := rd.ReadAll()
		if err != nil {
			t.Fatalf("encoding/csv cannot read %q: %v", written, err)
		}
		if len(records) != 2 || records[1][0] != v1 || records[1][1] != v2 {
			t.Fatalf("read back %q from %q, want %q and %q", records, written, v1, v2)
		}
	})
}

func validCSVComma(r rune) bool {
	return r != 0 && r != '"' && r != '\r' && r != '\n' && utf8.ValidRune(r) && r != utf8.RuneError && r != 0xFEFF
}
