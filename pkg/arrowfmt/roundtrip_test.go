package arrowfmt_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// checkValue compares what a reader decoded (a string or json.Number for
// scalars, []any or map[string]any for nested values, nil for null) with
// row i of arr. It reimplements nothing of the writer: it parses.
func checkValue(arr arrow.Array, i int, got any) error {
	// Encodings first: their nulls live among their values.
	switch a := arr.(type) {
	case *array.RunEndEncoded:
		return checkValue(a.Values(), a.GetPhysicalIndex(i), got)
	case *array.Dictionary:
		if !a.IsNull(i) {
			return checkValue(a.Dictionary(), a.GetValueIndex(i), got)
		}
	}
	if arr.IsNull(i) || arr.DataType().ID() == arrow.NULL {
		if got != nil {
			return fmt.Errorf("want null, got %#v", got)
		}
		return nil
	}
	if got == nil {
		return errors.New("got null for a value")
	}
	text := fmt.Sprint(got)
	switch a := arr.(type) {
	case *array.Int8, *array.Int16, *array.Int32, *array.Int64:
		v, err := strconv.ParseInt(text, 10, 64)
		want, _ := strconv.ParseInt(a.ValueStr(i), 10, 64)
		if err != nil || v != want {
			return fmt.Errorf("int: got %q, want %d", text, want)
		}
	case *array.Uint8, *array.Uint16, *array.Uint32, *array.Uint64:
		v, err := strconv.ParseUint(text, 10, 64)
		want, _ := strconv.ParseUint(a.ValueStr(i), 10, 64)
		if err != nil || v != want {
			return fmt.Errorf("uint: got %q, want %d", text, want)
		}
	case *array.Float16:
		return sameFloat(text, float64(a.Value(i).Float32()), 32)
	case *array.Float32:
		return sameFloat(text, float64(a.Value(i)), 32)
	case *array.Float64:
		return sameFloat(text, a.Value(i), 64)
	case *array.Decimal128:
		return sameDecimal(text, a.Value(i).BigInt(), a.DataType().(*arrow.Decimal128Type).Scale)
	case *array.Decimal256:
		return sameDecimal(text, a.Value(i).BigInt(), a.DataType().(*arrow.Decimal256Type).Scale)
	case *array.String:
		return sameString(text, a.Value(i))
	case *array.LargeString:
		return sameString(text, a.Value(i))
	case *array.StringView:
		return sameString(text, a.Value(i))
	case *array.Binary, *array.LargeBinary, *array.FixedSizeBinary:
		b, err := base64.StdEncoding.DecodeString(text)
		want := a.(interface{ Value(int) []byte }).Value(i)
		if err != nil || !bytes.Equal(b, want) {
			return fmt.Errorf("binary: got %q, want %x", text, want)
		}
	case *array.Boolean:
		if text != strconv.FormatBool(a.Value(i)) {
			return fmt.Errorf("bool: got %q", text)
		}
	case *array.Date32:
		return sameTime(text, "2006-01-02", a.Value(i).ToTime(), false)
	case *array.Date64:
		return sameTime(text, "2006-01-02", a.Value(i).ToTime(), false)
	case *array.Time32:
		return sameTime(text, "15:04:05.999999999", a.Value(i).ToTime(a.DataType().(*arrow.Time32Type).Unit), false)
	case *array.Time64:
		return sameTime(text, "15:04:05.999999999", a.Value(i).ToTime(a.DataType().(*arrow.Time64Type).Unit), false)
	case *array.Timestamp:
		tt := a.DataType().(*arrow.TimestampType)
		want := a.Value(i).ToTime(tt.Unit)
		if tt.TimeZone == "" {
			return sameTime(text, "2006-01-02T15:04:05.999999999", want, false)
		}
		loc, _ := tt.GetZone()
		return sameTime(text, time.RFC3339Nano, want.In(loc), true)
	case *array.Duration:
		unit := a.DataType().(*arrow.DurationType).Unit
		ns := new(big.Int).Mul(big.NewInt(int64(a.Value(i))), big.NewInt(int64(unit.Multiplier())))
		return sameSeconds(text, `^PT(-?[0-9.]+)S$`, 1, new(big.Rat).SetFrac(ns, big.NewInt(1e9)))
	case *array.MonthInterval:
		if text != fmt.Sprintf("P%dM", a.Value(i)) {
			return fmt.Errorf("month interval: got %q", text)
		}
	case *array.MonthDayNanoInterval:
		v := a.Value(i)
		prefix := fmt.Sprintf("P%dM%dDT", v.Months, v.Days)
		if !strings.HasPrefix(text, prefix) {
			return fmt.Errorf("interval: got %q, want prefix %q", text, prefix)
		}
		return sameSeconds(text, `^P-?\d+M-?\d+DT(-?[0-9.]+)S$`, 1, big.NewRat(v.Nanoseconds, 1e9))
	case *array.Map:
		return checkMap(a, i, got)
	case array.ListLike:
		l, ok := got.([]any)
		start, end := a.ValueOffsets(i)
		if !ok || int64(len(l)) != end-start {
			return fmt.Errorf("list: got %#v, want %d elements", got, end-start)
		}
		for k := range l {
			if err := checkValue(a.ListValues(), int(start)+k, l[k]); err != nil {
				return fmt.Errorf("element %d: %w", k, err)
			}
		}
	case *array.Struct:
		m, ok := got.(map[string]any)
		st := a.DataType().(*arrow.StructType)
		if !ok || len(m) != st.NumFields() {
			return fmt.Errorf("struct: got %#v", got)
		}
		for k, f := range st.Fields() {
			if err := checkValue(a.Field(k), i, m[f.Name]); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
	default:
		return fmt.Errorf("no check for %s", arr.DataType())
	}
	return nil
}

// checkMap reads a map: a JSON object for string keys, else an array of
// {"key", "value"} objects.
func checkMap(a *array.Map, i int, got any) error {
	start, end := a.ValueOffsets(i)
	if keys, ok := a.Keys().(*array.String); ok {
		m, ok := got.(map[string]any)
		if !ok || int64(len(m)) != end-start {
			return fmt.Errorf("map: got %#v", got)
		}
		for k := start; k < end; k++ {
			if err := checkValue(a.Items(), int(k), m[keys.Value(int(k))]); err != nil {
				return fmt.Errorf("map key %q: %w", keys.Value(int(k)), err)
			}
		}
		return nil
	}
	pairs, ok := got.([]any)
	if !ok || int64(len(pairs)) != end-start {
		return fmt.Errorf("map: got %#v", got)
	}
	for k := start; k < end; k++ {
		pair, ok := pairs[k-start].(map[string]any)
		if !ok || len(pair) != 2 {
			return fmt.Errorf("map entry: got %#v", pairs[k-start])
		}
		if err := checkValue(a.Keys(), int(k), pair["key"]); err != nil {
			return fmt.Errorf("map key: %w", err)
		}
		if err := checkValue(a.Items(), int(k), pair["value"]); err != nil {
			return fmt.Errorf("map value: %w", err)
		}
	}
	return nil
}

func sameString(got, want string) error {
	if got != strings.ToValidUTF8(want, "\ufffd") {
		return fmt.Errorf("string: got %q, want %q", got, want)
	}
	return nil
}

func sameFloat(text string, want float64, bits int) error {
	var got float64
	switch text {
	case "NaN":
		got = math.NaN()
	case "Infinity":
		got = math.Inf(1)
	case "-Infinity":
		got = math.Inf(-1)
	default:
		var err error
		if got, err = strconv.ParseFloat(text, bits); err != nil {
			return fmt.Errorf("float: %q: %v", text, err)
		}
	}
	if (math.IsNaN(want) && math.IsNaN(got)) || got == want {
		return nil
	}
	return fmt.Errorf("float: got %q, want %v", text, want)
}

func sameDecimal(text string, unscaled *big.Int, scale int32) error {
	got, ok := new(big.Rat).SetString(text)
	want := new(big.Rat).SetFrac(unscaled, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
	if !ok || got.Cmp(want) != 0 {
		return fmt.Errorf("decimal: got %q, want %s", text, want.FloatString(int(scale)))
	}
	return nil
}

func sameTime(text, layout string, want time.Time, zoned bool) error {
	got, err := time.Parse(layout, text)
	if err != nil {
		return fmt.Errorf("time %q: %v", text, err)
	}
	if zoned {
		_, wantOff := want.Zone()
		_, gotOff := got.Zone()
		if wantOff != gotOff || !got.Equal(want) {
			return fmt.Errorf("time: got %q, want %s", text, want.Format(time.RFC3339Nano))
		}
		return nil
	}
	if wt := want.UTC(); !got.Equal(time.Date(got.Year(), got.Month(), got.Day(), wt.Hour(), wt.Minute(), wt.Second(), wt.Nanosecond(), time.UTC)) ||
		(layout != "15:04:05.999999999" && !got.Equal(wt)) {
		return fmt.Errorf("time: got %q, want %s", text, want.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

func sameSeconds(text, pattern string, group int, want *big.Rat) error {
	m := regexp.MustCompile(pattern).FindStringSubmatch(text)
	if m == nil {
		return fmt.Errorf("duration %q does not match %s", text, pattern)
	}
	got, ok := new(big.Rat).SetString(m[group])
	if !ok || got.Cmp(want) != 0 {
		return fmt.Errorf("duration: got %q, want %s s", text, want.FloatString(9))
	}
	return nil
}

const rows = 600

func batches(t *testing.T, cols []column, seed uint64) (*arrow.Schema, []arrow.RecordBatch) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	var out []arrow.RecordBatch
	for _, n := range []int{rows / 3, 1, rows - rows/3 - 1} { // uneven batches, one of a single row
		rec := randomBatch(memory.DefaultAllocator, cols, n, r)
		t.Cleanup(rec.Release)
		out = append(out, rec)
	}
	return schemaOf(cols), out
}

// cell answers row of column k across batches.
func cell(recs []arrow.RecordBatch, k, row int) (arrow.Array, int) {
	for _, rec := range recs {
		if row < int(rec.NumRows()) {
			return rec.Column(k), row
		}
		row -= int(rec.NumRows())
	}
	panic("row out of range")
}

// textColumns are the columns delimited and JSON output carry.
func textColumns() []column { return allColumns() }

func TestDelimitedRoundTrip(t *testing.T) {
	const null = `\N`
	for _, tc := range []struct {
		name  string
		opts  arrowfmt.DelimitedOptions
		delim rune
	}{
		{"csv minimal", arrowfmt.DelimitedOptions{Header: true, NullValue: null}, ','},
		{"tsv all crlf", arrowfmt.DelimitedOptions{Delimiter: '\t', Header: true, Quote: arrowfmt.QuoteAll, CRLF: true, NullValue: null}, '\t'},
		{"psv non-numeric", arrowfmt.DelimitedOptions{Delimiter: '|', Header: true, Quote: arrowfmt.QuoteNonNumeric, NullValue: null}, '|'},
		{"semicolon all non-null", arrowfmt.DelimitedOptions{Delimiter: ';', Header: true, Quote: arrowfmt.QuoteAllNonNull, NullValue: null}, ';'},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cols := textColumns()
			schema, recs := batches(t, cols, 42)
			var out bytes.Buffer
			w, err := arrowfmt.NewDelimited(&out, schema, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				if err := w.Write(rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.opts.CRLF && bytes.Count(out.Bytes(), []byte("\r\n")) < rows+1 {
				t.Fatal("CRLF line endings missing")
			}
			rd := csv.NewReader(&out)
			rd.Comma = tc.delim
			records, err := rd.ReadAll()
			if err != nil {
				t.Fatalf("encoding/csv cannot read the output: %v", err)
			}
			if len(records) != rows+1 {
				t.Fatalf("read %d records, want %d", len(records), rows+1)
			}
			for k, f := range schema.Fields() {
				if records[0][k] != f.Name {
					t.Fatalf("header %d = %q, want %q", k, records[0][k], f.Name)
				}
			}
			for row := range rows {
				for k, f := range schema.Fields() {
					arr, i := cell(recs, k, row)
					var got any = records[row+1][k]
					if got == null {
						got = nil
					} else if isNestedField(f.Type) {
						got = decodeJSON(t, records[row+1][k])
					}
					if err := checkValue(arr, i, got); err != nil {
						t.Fatalf("row %d column %s: %v", row, f.Name, err)
					}
				}
			}
		})
	}
}

func isNestedField(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.LIST, arrow.LARGE_LIST, arrow.FIXED_SIZE_LIST, arrow.STRUCT, arrow.MAP:
		return true
	}
	return false
}

func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("not JSON: %q: %v", s, err)
	}
	return v
}

func TestJSONRoundTrip(t *testing.T) {
	for _, lines := range []bool{false, true} {
		t.Run(map[bool]string{false: "json", true: "ndjson"}[lines], func(t *testing.T) {
			cols := textColumns()
			schema, recs := batches(t, cols, 7)
			var out bytes.Buffer
			w, err := arrowfmt.NewJSON(&out, schema, arrowfmt.JSONOptions{Lines: lines, RowNumber: "row_number"})
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				if err := w.Write(rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			var objects []map[string]any
			if lines {
				sc := bufio.NewScanner(&out)
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					objects = append(objects, decodeJSON(t, sc.Text()).(map[string]any))
				}
			} else {
				for _, v := range decodeJSON(t, out.String()).([]any) {
					objects = append(objects, v.(map[string]any))
				}
			}
			if len(objects) != rows {
				t.Fatalf("read %d objects, want %d", len(objects), rows)
			}
			for row, obj := range objects {
				if fmt.Sprint(obj["row_number"]) != strconv.Itoa(row+1) {
					t.Fatalf("row %d numbered %v", row, obj["row_number"])
				}
				for k, f := range schema.Fields() {
					arr, i := cell(recs, k, row)
					got, present := obj[f.Name]
					if !present {
						t.Fatalf("row %d lacks %s", row, f.Name)
					}
					if err := checkValue(arr, i, got); err != nil {
						t.Fatalf("row %d column %s: %v", row, f.Name, err)
					}
				}
			}
		})
	}
}

// Parquet keeps Arrow's types: what pqarrow reads back equals what was
// written, value for value.
func TestParquetRoundTrip(t *testing.T) {
	cols := parquetColumns(t)
	for _, codec := range []arrowfmt.Codec{arrowfmt.Snappy, arrowfmt.Zstd, arrowfmt.Gzip, arrowfmt.Uncompressed} {
		t.Run(fmt.Sprint(codec), func(t *testing.T) {
			schema, recs := batches(t, cols, 99)
			var out bytes.Buffer
			w, err := arrowfmt.NewParquet(&out, schema, arrowfmt.ParquetOptions{Codec: codec, RowGroupRows: 250})
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				if err := w.Write(rec); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rdr, err := file.NewParquetReader(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if n := rdr.NumRowGroups(); n != 3 {
				t.Fatalf("%d row groups for %d rows of at most 250, want 3", n, rows)
			}
			tbl, err := pqarrow.ReadTable(context.Background(), bytes.NewReader(out.Bytes()), nil, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
			if err != nil {
				t.Fatal(err)
			}
			defer tbl.Release()
			want := arrowfmt.ParquetSchema(schema)
			for k, f := range want.Fields() {
				g := tbl.Schema().Field(k)
				if ts, ok := f.Type.(*arrow.TimestampType); ok && ts.Unit == arrow.Second {
					// Parquet has no seconds: pqarrow stores milliseconds.
					f.Type = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: ts.TimeZone}
				}
				// Parquet names list elements "element" where Arrow says "item".
				sameType := arrow.TypeEqual(g.Type, f.Type) ||
					strings.ReplaceAll(g.Type.String(), "element:", "item:") == strings.ReplaceAll(f.Type.String(), "element:", "item:")
				if g.Name != f.Name || !sameType || g.Nullable != f.Nullable {
					t.Fatalf("field %d read back as %s, want %s", k, g, f)
				}
				if _, isDur := schema.Field(k).Type.(*arrow.DurationType); isDur {
					if unit, ok := g.Metadata.GetValue(arrowfmt.DurationUnitKey); !ok || unit != "ms" {
						t.Fatalf("duration column %s lost its unit: %v", g.Name, g.Metadata)
					}
				}
			}
			for k, f := range schema.Fields() {
				var chunks []arrow.Array
				for _, rec := range recs {
					chunks = append(chunks, rec.Column(k))
				}
				want, err := array.Concatenate(chunks, memory.DefaultAllocator)
				if err != nil {
					t.Fatal(err)
				}
				got, err := array.Concatenate(tbl.Column(k).Data().Chunks(), memory.DefaultAllocator)
				if err != nil {
					t.Fatal(err)
				}
				if !sameValues(want, got) {
					t.Fatalf("column %s differs after the round trip", f.Name)
				}
				want.Release()
				got.Release()
			}
		})
	}
}

// parquetColumns are the columns Parquet carries; the rest must be refused
// with an error that names them.
func parquetColumns(t *testing.T) []column {
	var ok []column
	for _, c := range allColumns() {
		err := arrowfmt.CheckParquet(arrow.NewSchema([]arrow.Field{c.field}, nil), arrowfmt.ParquetOptions{})
		var ue *arrowfmt.UnsupportedError
		switch {
		case err == nil:
			ok = append(ok, c)
		case errors.As(err, &ue) && ue.Column == c.field.Name:
			t.Logf("Parquet refuses %s (%s): %v", c.field.Name, c.field.Type, err)
		default:
			t.Fatalf("CheckParquet(%s): %v", c.field.Name, err)
		}
	}
	if len(ok) < len(allColumns())-3 { // the two interval types, run-end encoding
		t.Fatalf("Parquet carries only %d of %d column types", len(ok), len(allColumns()))
	}
	return ok
}

// sameValues compares a written column with what Parquet gave back, where
// views read back as plain strings and durations as int64 of their unit.
func sameValues(want, got arrow.Array) bool {
	switch w := want.(type) {
	case *array.StringView:
		g, ok := got.(*array.String)
		if !ok || g.Len() != w.Len() {
			return false
		}
		for i := 0; i < w.Len(); i++ {
			if w.IsNull(i) != g.IsNull(i) || (!w.IsNull(i) && w.Value(i) != g.Value(i)) {
				return false
			}
		}
		return true
	case *array.Date64:
		g, ok := got.(*array.Date32)
		if !ok || g.Len() != w.Len() {
			return false
		}
		for i := 0; i < w.Len(); i++ {
			if w.IsNull(i) != g.IsNull(i) || (!w.IsNull(i) && !w.Value(i).ToTime().Equal(g.Value(i).ToTime())) {
				return false
			}
		}
		return true
	case *array.FixedSizeList, *array.LargeList:
		// Element by element: element names differ after Parquet.
		wl, gl := want.(array.ListLike), got.(array.ListLike)
		if gl.Len() != wl.Len() {
			return false
		}
		for i := 0; i < wl.Len(); i++ {
			if wl.IsNull(i) != gl.IsNull(i) {
				return false
			}
			if wl.IsNull(i) {
				continue
			}
			ws, we := wl.ValueOffsets(i)
			gs, ge := gl.ValueOffsets(i)
			a, b := array.NewSlice(wl.ListValues(), ws, we), array.NewSlice(gl.ListValues(), gs, ge)
			same := array.ApproxEqual(a, b, array.WithNaNsEqual(true))
			a.Release()
			b.Release()
			if !same {
				return false
			}
		}
		return true
	case *array.Timestamp:
		g, ok := got.(*array.Timestamp)
		if !ok || g.Len() != w.Len() {
			return false
		}
		wu, gu := w.DataType().(*arrow.TimestampType).Unit, g.DataType().(*arrow.TimestampType).Unit
		for i := 0; i < w.Len(); i++ {
			if w.IsNull(i) != g.IsNull(i) || (!w.IsNull(i) && !w.Value(i).ToTime(wu).Equal(g.Value(i).ToTime(gu))) {
				return false
			}
		}
		return true
	case *array.Duration:
		g, ok := got.(*array.Int64)
		if !ok || g.Len() != w.Len() {
			return false
		}
		for i := 0; i < w.Len(); i++ {
			if w.IsNull(i) != g.IsNull(i) || (!w.IsNull(i) && int64(w.Value(i)) != g.Value(i)) {
				return false
			}
		}
		return true
	}
	return array.ApproxEqual(want, got, array.WithNaNsEqual(true))
}
