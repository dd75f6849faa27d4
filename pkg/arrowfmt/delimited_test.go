package arrowfmt_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// small is a batch whose exact renderings the tests spell out.
func small(t *testing.T) arrow.RecordBatch {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "score", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	names := b.Field(0).(*array.StringBuilder)
	scores := b.Field(1).(*array.Float64Builder)
	tags := b.Field(2).(*array.ListBuilder)
	tv := tags.ValueBuilder().(*array.StringBuilder)
	names.AppendValues([]string{`Ann "A", Jr`, ""}, nil)
	names.AppendNull()
	scores.AppendValues([]float64{1.5, -2}, nil)
	scores.AppendNull()
	tags.Append(true)
	tv.AppendValues([]string{"x", `y"z`}, nil)
	tags.Append(true)
	tags.AppendNull()
	rec := b.NewRecordBatch()
	t.Cleanup(rec.Release)
	return rec
}

func TestQuoteModes(t *testing.T) {
	tests := []struct {
		name string
		opts arrowfmt.DelimitedOptions
		want string
	}{
		{"minimal", arrowfmt.DelimitedOptions{Header: true},
			"name,score,tags\n\"Ann \"\"A\"\", Jr\",1.5,\"[\"\"x\"\",\"\"y\\\"\"z\"\"]\"\n\"\",-2,[]\n,,\n"},
		// Issue 10, item 4: "all fields" quotes NULLs too; "all non-null
		// fields" leaves them bare.
		{"all", arrowfmt.DelimitedOptions{Quote: arrowfmt.QuoteAll},
			"\"Ann \"\"A\"\", Jr\",\"1.5\",\"[\"\"x\"\",\"\"y\\\"\"z\"\"]\"\n\"\",\"-2\",\"[]\"\n\"\",\"\",\"\"\n"},
		{"all non-null", arrowfmt.DelimitedOptions{Quote: arrowfmt.QuoteAllNonNull},
			"\"Ann \"\"A\"\", Jr\",\"1.5\",\"[\"\"x\"\",\"\"y\\\"\"z\"\"]\"\n\"\",\"-2\",\"[]\"\n,,\n"},
		{"non-numeric", arrowfmt.DelimitedOptions{Quote: arrowfmt.QuoteNonNumeric},
			"\"Ann \"\"A\"\", Jr\",1.5,\"[\"\"x\"\",\"\"y\\\"\"z\"\"]\"\n\"\",-2,\"[]\"\n,,\n"},
		{"escape character", arrowfmt.DelimitedOptions{Escape: '\\', NullValue: "NULL"},
			"\"Ann \\\"A\\\", Jr\",1.5,\"[\\\"x\\\",\\\"y\\\\\\\"z\\\"]\"\n\"\",-2,[]\nNULL,NULL,NULL\n"},
		{"none with escape", arrowfmt.DelimitedOptions{Delimiter: '|', Quote: arrowfmt.QuoteNone, Escape: '\\', CRLF: true, RowNumber: "row_number", Header: true, NullValue: `\N`},
			"row_number|name|score|tags\r\n1|Ann \\\"A\\\", Jr|1.5|[\\\"x\\\",\\\"y\\\\\\\"z\\\"]\r\n2||-2|[]\r\n3|\\N|\\N|\\N\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := small(t)
			var out bytes.Buffer
			w, err := arrowfmt.NewDelimited(&out, rec.Schema(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Fatalf("got:\n%q\nwant:\n%q", out.String(), tt.want)
			}
		})
	}
}

func TestQuoteNoneWithoutEscapeRefusesSpecialCharacters(t *testing.T) {
	all := small(t)
	var fields []arrow.Field
	var cols []arrow.Array
	for k, f := range all.Schema().Fields() {
		if f.Type.ID() != arrow.LIST && f.Type.ID() != arrow.STRUCT && f.Type.ID() != arrow.MAP { // nested: refused up front
			fields, cols = append(fields, f), append(cols, all.Column(k))
		}
	}
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, all.NumRows())
	defer rec.Release()
	var out bytes.Buffer
	w, err := arrowfmt.NewDelimited(&out, rec.Schema(), arrowfmt.DelimitedOptions{Quote: arrowfmt.QuoteNone})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Write(rec)
	var ve *arrowfmt.ValueError
	if !errors.As(err, &ve) || ve.Column != "name" || ve.Row < 1 || !strings.Contains(err.Error(), "no escape character") {
		t.Fatalf("got %v, want a ValueError naming the column and row", err)
	}
}

// Nested columns are written as JSON text, which always holds quotes: in
// quote mode none without an escape character they are refused before any
// byte, by name (#22: they answered INTERNAL on the first value).
func TestQuoteNoneWithoutEscapeRefusesJSONTextColumns(t *testing.T) {
	for _, dt := range []arrow.DataType{
		arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int32}),
		arrow.ListOf(arrow.PrimitiveTypes.Int32),
		arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int32),
	} {
		schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "nested", Type: dt}}, nil)
		_, err := arrowfmt.NewDelimited(&bytes.Buffer{}, schema, arrowfmt.DelimitedOptions{Quote: arrowfmt.QuoteNone})
		var ue *arrowfmt.UnsupportedError
		if !errors.As(err, &ue) || ue.Column != "nested" {
			t.Errorf("%s: %v, want the column refused", dt, err)
		}
		if _, err := arrowfmt.NewDelimited(&bytes.Buffer{}, schema, arrowfmt.DelimitedOptions{Quote: arrowfmt.QuoteNone, Escape: '\\'}); err != nil {
			t.Errorf("%s with an escape character: %v", dt, err)
		}
	}
}

func TestUnsupportedTypeIsRefusedBeforeAnyByte(t *testing.T) {
	union := arrow.SparseUnionOf([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int32}}, []arrow.UnionTypeCode{0})
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "either", Type: union}}, nil)
	var out bytes.Buffer
	_, errCSV := arrowfmt.NewDelimited(&out, schema, arrowfmt.DelimitedOptions{Header: true})
	_, errJSON := arrowfmt.NewJSON(&out, schema, arrowfmt.JSONOptions{})
	_, errParquet := arrowfmt.NewParquet(&out, schema, arrowfmt.ParquetOptions{})
	for _, err := range []error{errCSV, errJSON, errParquet} {
		var ue *arrowfmt.UnsupportedError
		if !errors.As(err, &ue) || ue.Column != "either" {
			t.Fatalf("got %v, want an UnsupportedError naming column either", err)
		}
	}
	if out.Len() != 0 {
		t.Fatalf("%d bytes written before the refusal", out.Len())
	}
}

func TestEmptyOutputs(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int64}}, nil)
	var csvOut, jsonOut, ndjsonOut bytes.Buffer
	c, _ := arrowfmt.NewDelimited(&csvOut, schema, arrowfmt.DelimitedOptions{Header: true})
	j, _ := arrowfmt.NewJSON(&jsonOut, schema, arrowfmt.JSONOptions{})
	n, _ := arrowfmt.NewJSON(&ndjsonOut, schema, arrowfmt.JSONOptions{Lines: true})
	for _, w := range []interface{ Close() error }{c, j, n} {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if csvOut.String() != "a\n" || jsonOut.String() != "[]\n" || ndjsonOut.String() != "" {
		t.Fatalf("empty outputs: %q %q %q", csvOut.String(), jsonOut.String(), ndjsonOut.String())
	}
}

// Issue 10, items 1 and 3: a value that reads the same as the null text is
// quoted so that it stays a value; where nothing can be quoted it is an
// error naming the column, never a silent NULL.
func TestValueEqualToNullText(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "code", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	b := array.NewStringBuilder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues([]string{`\N`, "NULL", ""}, nil)
	b.AppendNull()
	col := b.NewArray()
	defer col.Release()
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, int64(col.Len()))
	defer rec.Release()
	write := func(opts arrowfmt.DelimitedOptions) (string, error) {
		var out bytes.Buffer
		w, err := arrowfmt.NewDelimited(&out, schema, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec); err != nil {
			return "", err
		}
		err = w.Close()
		return out.String(), err
	}
	for _, tc := range []struct {
		opts arrowfmt.DelimitedOptions
		want string
	}{
		{arrowfmt.DelimitedOptions{NullValue: `\N`}, "\"\\N\"\nNULL\n\"\"\n\\N\n"},
		{arrowfmt.DelimitedOptions{NullValue: "NULL", Quote: arrowfmt.QuoteNonNumeric}, "\"\\N\"\n\"NULL\"\n\"\"\nNULL\n"},
		{arrowfmt.DelimitedOptions{NullValue: `\N`, Quote: arrowfmt.QuoteNone, Escape: '\\'}, "\\\\N\nNULL\n\n\\N\n"},
	} {
		got, err := write(tc.opts)
		if err != nil || got != tc.want {
			t.Errorf("%+v: got %q, %v; want %q", tc.opts, got, err, tc.want)
		}
	}
	for _, opts := range []arrowfmt.DelimitedOptions{
		{NullValue: `\N`, Quote: arrowfmt.QuoteNone},                 // no escape: \N is written as is
		{NullValue: "", Quote: arrowfmt.QuoteNone, Escape: '\\'},     // the empty string
		{NullValue: "NULL", Quote: arrowfmt.QuoteNone, Escape: '\\'}, // NULL holds nothing to escape
	} {
		if _, err := write(opts); err == nil || !strings.Contains(err.Error(), `column "code"`) {
			t.Errorf("%+v: got %v, want an error naming the column", opts, err)
		}
	}
}

// Output fidelity (#22): a column name that is not UTF-8 is refused by
// the text formats (it would go raw into a CSV header), two columns of one
// name by JSON (two keys of one name), and a date or time whose year has
// no RFC 3339 form (past 9999, before 0000) by row and column, in the
// zone it is written in.
func TestTextFidelity(t *testing.T) {
	bad := arrow.NewSchema([]arrow.Field{{Name: "ok", Type: arrow.PrimitiveTypes.Int64}, {Name: "caf\xe9", Type: arrow.PrimitiveTypes.Int64}}, nil)
	if _, err := arrowfmt.NewDelimited(&bytes.Buffer{}, bad, arrowfmt.DelimitedOptions{Header: true}); !isColumnError(err) {
		t.Errorf("CSV with a name not UTF-8: %v", err)
	}
	if _, err := arrowfmt.NewJSON(&bytes.Buffer{}, bad, arrowfmt.JSONOptions{}); !isColumnError(err) {
		t.Errorf("JSON with a name not UTF-8: %v", err)
	}
	twice := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "id", Type: arrow.BinaryTypes.String}}, nil)
	var ce *arrowfmt.ColumnError
	if _, err := arrowfmt.NewJSON(&bytes.Buffer{}, twice, arrowfmt.JSONOptions{Lines: true}); !errors.As(err, &ce) || ce.Column != "id" {
		t.Errorf("NDJSON with two columns named id: %v", err)
	}
	if _, err := arrowfmt.NewDelimited(&bytes.Buffer{}, twice, arrowfmt.DelimitedOptions{Header: true}); err != nil {
		t.Errorf("CSV with two columns named id (a header may repeat): %v", err)
	}
	year := func(y int) time.Time { return time.Date(y, 6, 1, 0, 0, 0, 0, time.UTC) }
	for _, c := range []struct {
		dt   arrow.DataType
		when time.Time
		ok   bool
	}{
		{&arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, year(9999), true},
		{&arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, year(10000), false},
		{&arrow.TimestampType{Unit: arrow.Second}, year(-1), false},
		{&arrow.TimestampType{Unit: arrow.Second}, year(0), true},
		// The last instant of 9999 in UTC is 10000 in Tokyo.
		{&arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "Asia/Tokyo"}, time.Date(9999, 12, 31, 23, 0, 0, 0, time.UTC), false},
		{arrow.FixedWidthTypes.Date32, year(10001), false},
		{arrow.FixedWidthTypes.Date64, year(2026), true},
	} {
		schema := arrow.NewSchema([]arrow.Field{{Name: "when", Type: c.dt, Nullable: true}}, nil)
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		b.Field(0).AppendNull()
		switch bb := b.Field(0).(type) {
		case *array.TimestampBuilder:
			v, err := arrow.TimestampFromTime(c.when, c.dt.(*arrow.TimestampType).Unit)
			if err != nil {
				t.Fatal(err)
			}
			bb.Append(v)
		case *array.Date32Builder:
			bb.Append(arrow.Date32FromTime(c.when))
		case *array.Date64Builder:
			bb.Append(arrow.Date64FromTime(c.when))
		}
		rec := b.NewRecordBatch()
		b.Release()
		for _, format := range []string{"csv", "json"} {
			var err error
			if format == "csv" {
				w, _ := arrowfmt.NewDelimited(&bytes.Buffer{}, schema, arrowfmt.DelimitedOptions{})
				err = w.Write(rec)
			} else {
				w, _ := arrowfmt.NewJSON(&bytes.Buffer{}, schema, arrowfmt.JSONOptions{})
				err = w.Write(rec)
			}
			var ve *arrowfmt.ValueError
			switch {
			case c.ok && err != nil:
				t.Errorf("%s %s %v: %v", format, c.dt, c.when, err)
			case !c.ok && (!errors.As(err, &ve) || ve.Column != "when" || ve.Row != 2):
				t.Errorf("%s %s %v: %v, want row 2 refused", format, c.dt, c.when, err)
			}
		}
		rec.Release()
	}
}

func isColumnError(err error) bool {
	var ce *arrowfmt.ColumnError
	return errors.As(err, &ce)
}
