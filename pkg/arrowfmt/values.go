// Package arrowfmt writes Arrow record batches as delimited text (CSV, TSV,
// PSV, any single-character delimiter), JSON, NDJSON and Parquet, one batch
// at a time to an io.Writer, so that memory is bounded by a batch (plus a
// Parquet row group) and never by the size of the output.
//
// Every Arrow type a query produces has one rendering, shared by the text
// formats:
//
//   - integers, floats and decimals as their digits (decimals exact);
//     NaN and infinities as the strings NaN, Infinity and -Infinity (JSON
//     has no such numbers, so JSON carries them as strings);
//   - strings as they are; binary as standard base64;
//   - dates as 2006-01-02, times as 15:04:05 with the unit's fraction;
//   - timestamps as RFC 3339 with the unit's fraction, with the column's
//     zone offset when it has a zone and none when it has not;
//   - durations and intervals as ISO 8601 durations (PT1.5S, P1M2DT0.5S);
//   - lists as JSON arrays, structs as JSON objects, maps as JSON objects
//     when keys are strings and arrays of {"key","value"} otherwise (nested
//     in JSON formats, as JSON text in delimited ones);
//   - dictionary, run-end encoded and extension columns as their values;
//   - NULL as null (JSON) or the null text (delimited).
//
// Unions are refused before any byte is written, naming the column.
package arrowfmt

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // the same zone rules on every machine
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// appender appends the value at row i of an array.
type appender func(dst []byte, arr arrow.Array, i int) []byte

// UnsupportedError names a column whose type a format cannot carry.
type UnsupportedError struct {
	Column string
	Type   arrow.DataType
	Format string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("column %q has type %s, which %s cannot carry", e.Column, e.Type, e.Format)
}

// ValueError is a value the format cannot write with its settings: which
// column and row (of the file, from 1), and why. It never holds the value
// itself: values are customers' data and go into no error or log.
type ValueError struct {
	Column string
	Row    int64
	Reason string
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("row %d, column %q: %s", e.Row, e.Column, e.Reason)
}

// isNumeric reports whether values of dt are written as bare numbers.
func isNumeric(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64, arrow.DECIMAL32, arrow.DECIMAL64, arrow.DECIMAL128, arrow.DECIMAL256:
		return true
	case arrow.DICTIONARY:
		return isNumeric(dt.(*arrow.DictionaryType).ValueType)
	case arrow.EXTENSION:
		return isNumeric(dt.(arrow.ExtensionType).StorageType())
	case arrow.RUN_END_ENCODED:
		return isNumeric(dt.(*arrow.RunEndEncodedType).Encoded())
	}
	return false
}

// isNested reports whether values of dt are lists, structs or maps.
func isNested(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.LIST, arrow.LARGE_LIST, arrow.FIXED_SIZE_LIST, arrow.LIST_VIEW, arrow.LARGE_LIST_VIEW, arrow.STRUCT, arrow.MAP:
		return true
	case arrow.DICTIONARY:
		return isNested(dt.(*arrow.DictionaryType).ValueType)
	case arrow.EXTENSION:
		return isNested(dt.(arrow.ExtensionType).StorageType())
	case arrow.RUN_END_ENCODED:
		return isNested(dt.(*arrow.RunEndEncodedType).Encoded())
	}
	return false
}

// textAppender renders a non-null scalar value as text for a delimited
// field (strings raw, not quoted); nested values become JSON text.
func textAppender(dt arrow.DataType) (appender, error) {
	switch dt.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return append(dst, arr.(interface{ Value(int) string }).Value(i)...)
		}, nil
	case arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		return func(dst []byte, arr arrow.Array, i int) []byte { return appendFloatText(dst, arr, i) }, nil
	case arrow.DICTIONARY:
		inner, err := textAppender(dt.(*arrow.DictionaryType).ValueType)
		if err != nil {
			return nil, err
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			d := arr.(*array.Dictionary)
			return inner(dst, d.Dictionary(), d.GetValueIndex(i))
		}, nil
	case arrow.EXTENSION:
		inner, err := textAppender(dt.(arrow.ExtensionType).StorageType())
		if err != nil {
			return nil, err
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return inner(dst, arr.(array.ExtensionArray).Storage(), i)
		}, nil
	case arrow.RUN_END_ENCODED:
		inner, err := textAppender(dt.(*arrow.RunEndEncodedType).Encoded())
		if err != nil {
			return nil, err
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			r := arr.(*array.RunEndEncoded)
			return inner(dst, r.Values(), r.GetPhysicalIndex(i))
		}, nil
	}
	// Everything else renders as in JSON: numbers, booleans, nested values
	// as they are; quoted scalars without their quotes.
	j, err := jsonAppender(dt)
	if err != nil {
		return nil, err
	}
	if isNumeric(dt) || isNested(dt) || dt.ID() == arrow.BOOL || dt.ID() == arrow.NULL {
		return j, nil
	}
	return func(dst []byte, arr arrow.Array, i int) []byte {
		start := len(dst)
		dst = j(dst, arr, i)
		// Dates, times, binary and durations are JSON strings without
		// characters that need escaping: drop the quotes.
		if len(dst)-start >= 2 && dst[start] == '"' {
			copy(dst[start:], dst[start+1:len(dst)-1])
			dst = dst[:len(dst)-2]
		}
		return dst
	}, nil
}

func appendFloatText(dst []byte, arr arrow.Array, i int) []byte {
	v, bits := floatAt(arr, i)
	switch {
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	case math.IsInf(v, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(v, -1):
		return append(dst, "-Infinity"...)
	}
	// Plain decimal notation with the shortest digits that read back
	// exactly, as JavaScript and most databases write numbers; exponent
	// form only outside [1e-6, 1e21), where plain digits would run long.
	if a := math.Abs(v); a == 0 || (a >= 1e-6 && a < 1e21) {
		return strconv.AppendFloat(dst, v, 'f', -1, bits)
	}
	return strconv.AppendFloat(dst, v, 'e', -1, bits)
}

func floatAt(arr arrow.Array, i int) (float64, int) {
	switch a := arr.(type) {
	case *array.Float16:
		return float64(a.Value(i).Float32()), 32
	case *array.Float32:
		return float64(a.Value(i)), 32
	default:
		return arr.(*array.Float64).Value(i), 64
	}
}

// isNull reports whether row i is NULL. Arrays of the null type carry no
// validity bitmap, so their IsNull answers false: every row is NULL.
// Run-end encoded and dictionary arrays keep nulls among their values too.
func isNull(arr arrow.Array, i int) bool {
	switch a := arr.(type) {
	case *array.Null:
		return true
	case *array.RunEndEncoded:
		return isNull(a.Values(), a.GetPhysicalIndex(i))
	case *array.Dictionary:
		return a.IsNull(i) || isNull(a.Dictionary(), a.GetValueIndex(i))
	}
	return arr.IsNull(i)
}

// jsonAppender renders a value (null included) as JSON.
func jsonAppender(dt arrow.DataType) (appender, error) {
	inner, err := jsonValue(dt)
	if err != nil {
		return nil, err
	}
	return func(dst []byte, arr arrow.Array, i int) []byte {
		if isNull(arr, i) {
			return append(dst, "null"...)
		}
		return inner(dst, arr, i)
	}, nil
}

func fraction(unit arrow.TimeUnit) string {
	switch unit {
	case arrow.Millisecond:
		return ".000"
	case arrow.Microsecond:
		return ".000000"
	case arrow.Nanosecond:
		return ".000000000"
	}
	return ""
}

// jsonValue renders a non-null value as JSON.
func jsonValue(dt arrow.DataType) (appender, error) {
	switch t := dt.(type) {
	case *arrow.NullType:
		return func(dst []byte, _ arrow.Array, _ int) []byte { return append(dst, "null"...) }, nil
	case *arrow.BooleanType:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return strconv.AppendBool(dst, arr.(*array.Boolean).Value(i))
		}, nil
	case *arrow.Int8Type, *arrow.Int16Type, *arrow.Int32Type, *arrow.Int64Type:
		return func(dst []byte, arr arrow.Array, i int) []byte { return strconv.AppendInt(dst, intAt(arr, i), 10) }, nil
	case *arrow.Uint8Type, *arrow.Uint16Type, *arrow.Uint32Type, *arrow.Uint64Type:
		return func(dst []byte, arr arrow.Array, i int) []byte { return strconv.AppendUint(dst, uintAt(arr, i), 10) }, nil
	case *arrow.Float16Type, *arrow.Float32Type, *arrow.Float64Type:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			v, _ := floatAt(arr, i)
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0):
				dst = append(dst, '"')
				return append(appendFloatText(dst, arr, i), '"')
			case v == 0 && math.Signbit(v):
				// "-0" reads as the integer 0 in Python's json and DuckDB
				// (#22): the fraction keeps it a float, and negative.
				return append(dst, "-0.0"...)
			}
			return appendFloatText(dst, arr, i)
		}, nil
	case *arrow.Decimal32Type:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return append(dst, arr.(*array.Decimal32).Value(i).ToString(t.Scale)...)
		}, nil
	case *arrow.Decimal64Type:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return append(dst, arr.(*array.Decimal64).Value(i).ToString(t.Scale)...)
		}, nil
	case *arrow.Decimal128Type:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return appendDecimal128(dst, arr.(*array.Decimal128).Value(i), t.Scale)
		}, nil
	case *arrow.Decimal256Type:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return append(dst, arr.(*array.Decimal256).Value(i).ToString(t.Scale)...)
		}, nil
	case *arrow.StringType, *arrow.LargeStringType, *arrow.StringViewType:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return appendJSONString(dst, arr.(interface{ Value(int) string }).Value(i))
		}, nil
	case *arrow.BinaryType, *arrow.LargeBinaryType, *arrow.BinaryViewType, *arrow.FixedSizeBinaryType:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			b := arr.(interface{ Value(int) []byte }).Value(i)
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, b)
			return append(dst, '"')
		}, nil
	case *arrow.Date32Type:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return appendQuotedTime(dst, arr.(*array.Date32).Value(i).ToTime(), "2006-01-02")
		}, nil
	case *arrow.Date64Type:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return appendQuotedTime(dst, arr.(*array.Date64).Value(i).ToTime(), "2006-01-02")
		}, nil
	case *arrow.Time32Type:
		layout := "15:04:05" + fraction(t.Unit)
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return appendQuotedTime(dst, arr.(*array.Time32).Value(i).ToTime(t.Unit), layout)
		}, nil
	case *arrow.Time64Type:
		layout := "15:04:05" + fraction(t.Unit)
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return appendQuotedTime(dst, arr.(*array.Time64).Value(i).ToTime(t.Unit), layout)
		}, nil
	case *arrow.TimestampType:
		layout := "2006-01-02T15:04:05" + fraction(t.Unit)
		var loc *time.Location
		if t.TimeZone != "" {
			l, err := t.GetZone()
			if err != nil {
				return nil, fmt.Errorf("time zone %q: %w", t.TimeZone, err)
			}
			loc, layout = l, layout+"Z07:00"
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			ts := arr.(*array.Timestamp).Value(i).ToTime(t.Unit)
			if loc != nil {
				ts = ts.In(loc)
				if _, offset := ts.Zone(); offset%60 != 0 {
					// RFC 3339 offsets have no seconds (Asia/Kolkata before
					// 1942 was +05:21:10): write such instants in UTC
					// rather than at a rounded, wrong offset.
					ts = ts.UTC()
				}
			}
			if ts.Location() == time.UTC {
				return appendQuotedUTC(dst, ts, len(fraction(t.Unit)), loc != nil)
			}
			return appendQuotedTime(dst, ts, layout)
		}, nil
	case *arrow.DurationType:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			dst = append(dst, `"PT`...)
			dst = appendSeconds(dst, int64(arr.(*array.Duration).Value(i)), t.Unit)
			return append(dst, `S"`...)
		}, nil
	case *arrow.MonthIntervalType:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return fmt.Appendf(dst, `"P%dM"`, arr.(*array.MonthInterval).Value(i))
		}, nil
	case *arrow.DayTimeIntervalType:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			v := arr.(*array.DayTimeInterval).Value(i)
			dst = fmt.Appendf(dst, `"P%dDT`, v.Days)
			dst = appendSeconds(dst, int64(v.Milliseconds), arrow.Millisecond)
			return append(dst, `S"`...)
		}, nil
	case *arrow.MonthDayNanoIntervalType:
		return func(dst []byte, arr arrow.Array, i int) []byte {
			v := arr.(*array.MonthDayNanoInterval).Value(i)
			dst = fmt.Appendf(dst, `"P%dM%dDT`, v.Months, v.Days)
			dst = appendSeconds(dst, v.Nanoseconds, arrow.Nanosecond)
			return append(dst, `S"`...)
		}, nil
	case *arrow.ListType, *arrow.LargeListType, *arrow.FixedSizeListType, *arrow.ListViewType, *arrow.LargeListViewType:
		elem, err := jsonAppender(dt.(arrow.ListLikeType).Elem())
		if err != nil {
			return nil, err
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			l := arr.(array.ListLike)
			start, end := l.ValueOffsets(i)
			values := l.ListValues()
			dst = append(dst, '[')
			for j := start; j < end; j++ {
				if j > start {
					dst = append(dst, ',')
				}
				dst = elem(dst, values, int(j))
			}
			return append(dst, ']')
		}, nil
	case *arrow.MapType:
		key, err := jsonAppender(t.KeyType())
		if err != nil {
			return nil, err
		}
		item, err := jsonAppender(t.ItemType())
		if err != nil {
			return nil, err
		}
		stringKeys := isString(t.KeyType())
		return func(dst []byte, arr arrow.Array, i int) []byte {
			m := arr.(*array.Map)
			start, end := m.ValueOffsets(i)
			keys, items := m.Keys(), m.Items()
			open, closing := byte('['), byte(']')
			if stringKeys {
				open, closing = '{', '}'
			}
			dst = append(dst, open)
			for j := start; j < end; j++ {
				if j > start {
					dst = append(dst, ',')
				}
				if stringKeys {
					dst = key(dst, keys, int(j))
					dst = append(dst, ':')
					dst = item(dst, items, int(j))
					continue
				}
				dst = append(dst, `{"key":`...)
				dst = key(dst, keys, int(j))
				dst = append(dst, `,"value":`...)
				dst = item(dst, items, int(j))
				dst = append(dst, '}')
			}
			return append(dst, closing)
		}, nil
	case *arrow.StructType:
		fields := make([]appender, t.NumFields())
		names := make([][]byte, t.NumFields())
		for k, f := range t.Fields() {
			a, err := jsonAppender(f.Type)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", f.Name, err)
			}
			fields[k] = a
			names[k] = append(appendJSONString(nil, f.Name), ':')
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			s := arr.(*array.Struct)
			dst = append(dst, '{')
			for k, a := range fields {
				if k > 0 {
					dst = append(dst, ',')
				}
				dst = append(dst, names[k]...)
				dst = a(dst, s.Field(k), i)
			}
			return append(dst, '}')
		}, nil
	case *arrow.DictionaryType:
		inner, err := jsonAppender(t.ValueType)
		if err != nil {
			return nil, err
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			d := arr.(*array.Dictionary)
			return inner(dst, d.Dictionary(), d.GetValueIndex(i))
		}, nil
	case *arrow.RunEndEncodedType:
		inner, err := jsonAppender(t.Encoded())
		if err != nil {
			return nil, err
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			r := arr.(*array.RunEndEncoded)
			return inner(dst, r.Values(), r.GetPhysicalIndex(i))
		}, nil
	case arrow.ExtensionType:
		inner, err := jsonAppender(t.StorageType())
		if err != nil {
			return nil, err
		}
		return func(dst []byte, arr arrow.Array, i int) []byte {
			return inner(dst, arr.(array.ExtensionArray).Storage(), i)
		}, nil
	}
	return nil, fmt.Errorf("type %s is not supported", dt)
}

func isString(dt arrow.DataType) bool {
	switch dt.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return true
	case arrow.DICTIONARY:
		return isString(dt.(*arrow.DictionaryType).ValueType)
	}
	return false
}

func intAt(arr arrow.Array, i int) int64 {
	switch a := arr.(type) {
	case *array.Int8:
		return int64(a.Value(i))
	case *array.Int16:
		return int64(a.Value(i))
	case *array.Int32:
		return int64(a.Value(i))
	default:
		return arr.(*array.Int64).Value(i)
	}
}

func uintAt(arr arrow.Array, i int) uint64 {
	switch a := arr.(type) {
	case *array.Uint8:
		return uint64(a.Value(i))
	case *array.Uint16:
		return uint64(a.Value(i))
	case *array.Uint32:
		return uint64(a.Value(i))
	default:
		return arr.(*array.Uint64).Value(i)
	}
}

func appendQuotedTime(dst []byte, t time.Time, layout string) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, layout)
	return append(dst, '"')
}

// appendQuotedUTC writes t, a UTC time, as appendQuotedTime does with the
// layout 2006-01-02T15:04:05 and a fraction of frac characters (".000",
// 0 for none), then "Z" when zoned, without the layout interpreter, which
// cost four times as much per timestamp.
func appendQuotedUTC(dst []byte, t time.Time, frac int, zoned bool) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		layout := "2006-01-02T15:04:05" + ".000000000"[:frac]
		if zoned {
			layout += "Z07:00"
		}
		return appendQuotedTime(dst, t, layout)
	}
	hour, minute, sec := t.Clock()
	dst = append(dst, '"')
	dst = append(dst, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-', byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':', byte('0'+minute/10), byte('0'+minute%10), ':', byte('0'+sec/10), byte('0'+sec%10))
	if frac > 0 {
		dst = append(dst, '.')
		ns := t.Nanosecond()
		var digits [9]byte
		for k := 8; k >= 0; k-- {
			digits[k] = byte('0' + ns%10)
			ns /= 10
		}
		dst = append(dst, digits[:frac-1]...)
	}
	if zoned {
		dst = append(dst, 'Z')
	}
	return append(dst, '"')
}

// appendSeconds writes v units as decimal seconds, trailing zeros trimmed.
func appendSeconds(dst []byte, v int64, unit arrow.TimeUnit) []byte {
	per := uint64(time.Second / unit.Multiplier()) // units per second
	u := uint64(v)
	if v < 0 {
		dst = append(dst, '-')
		u = uint64(-v) // two's complement: exact for MinInt64 too
	}
	dst = strconv.AppendUint(dst, u/per, 10)
	frac := u % per
	if frac == 0 {
		return dst
	}
	digits := len(strconv.FormatUint(per, 10)) - 1
	s := strconv.FormatUint(frac, 10)
	for len(s) < digits {
		s = "0" + s
	}
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	dst = append(dst, '.')
	return append(dst, s...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ColumnError is a column a format refuses by its name, not its type: a
// name that is not UTF-8, or one that two columns share where the format
// needs them apart.
type ColumnError struct {
	Column string
	Reason string
}

func (e *ColumnError) Error() string { return fmt.Sprintf("column %q: %s", e.Column, e.Reason) }

// checkNames refuses column names that are not UTF-8 (they would go raw
// into a CSV header, and become U+FFFD in JSON), and, when unique is set,
// a name two columns share (two JSON keys of one name, #22).
func checkNames(schema *arrow.Schema, unique bool, format string) error {
	seen := map[string]bool{}
	for k, f := range schema.Fields() {
		if !utf8.ValidString(f.Name) {
			return &ColumnError{Column: strings.ToValidUTF8(f.Name, "\ufffd"), Reason: fmt.Sprintf("the name of column %d is not valid UTF-8", k+1)}
		}
		if unique && seen[f.Name] {
			return &ColumnError{Column: f.Name, Reason: fmt.Sprintf("two columns have this name, and %s objects cannot have two keys of one name: rename one", format)}
		}
		seen[f.Name] = true
	}
	return nil
}

// RFC 3339 writes years 0000 to 9999, and its readers refuse any other.
var (
	firstTextTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	lastTextTime  = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	// Within this, every zone's local time is within the years too.
	zoneMargin = 26 * time.Hour
)

// checkTextYears answers a *ValueError for the first date or timestamp of
// a top-level column whose year, as written, is outside 0000 to 9999: RFC
// 3339 has no form for it. firstRow is the file's row before the batch.
func checkTextYears(rec arrow.RecordBatch, firstRow int64) error {
	const why = "the year is outside 0000 to 9999, which RFC 3339 dates and times cannot write"
	for k, col := range rec.Columns() {
		var at func(i int) (time.Time, bool) // the time, and whether it is certainly fine
		switch a := col.(type) {
		case *array.Timestamp:
			unit := a.DataType().(*arrow.TimestampType).Unit
			zone := a.DataType().(*arrow.TimestampType).TimeZone
			lo, hi := toUnit(firstTextTime.Add(zoneMargin), unit), toUnit(lastTextTime.Add(-zoneMargin), unit)
			var loc *time.Location
			if zone != "" {
				loc, _ = a.DataType().(*arrow.TimestampType).GetZone()
			}
			at = func(i int) (time.Time, bool) {
				v := int64(a.Value(i))
				if v > lo && v < hi {
					return time.Time{}, true
				}
				t := a.Value(i).ToTime(unit)
				if loc != nil {
					t = t.In(loc)
				}
				return t, false
			}
		case *array.Date32:
			at = func(i int) (time.Time, bool) { return a.Value(i).ToTime(), false }
		case *array.Date64:
			at = func(i int) (time.Time, bool) { return a.Value(i).ToTime(), false }
		default:
			continue
		}
		for i := 0; i < col.Len(); i++ {
			if col.IsNull(i) {
				continue
			}
			if t, fine := at(i); !fine && (t.Year() < 0 || t.Year() > 9999) {
				return &ValueError{Column: rec.Schema().Field(k).Name, Row: firstRow + int64(i) + 1, Reason: why}
			}
		}
	}
	return nil
}

// toUnit answers t as a count of unit since 1970, saturating.
func toUnit(t time.Time, unit arrow.TimeUnit) int64 {
	secs := t.Unix()
	per := int64(unit.Multiplier() / time.Second)
	if unit.Multiplier() < time.Second {
		mult := int64(time.Second / unit.Multiplier())
		if secs > math.MaxInt64/mult || secs < math.MinInt64/mult {
			if secs > 0 {
				return math.MaxInt64
			}
			return math.MinInt64
		}
		return secs * mult
	}
	return secs / max(per, 1)
}

// appendDecimal128 writes n at scale as decimal128's ToString does. That
// goes through math/big for every value, which made a 1,000-row export's
// one decimal column cost more than its strings: a value that fits in an
// int64 (every one of precision 18 or less) is written with strconv.
func appendDecimal128(dst []byte, n decimal128.Num, scale int32) []byte {
	hi, lo := n.HighBits(), n.LowBits()
	if (hi != 0 || lo>>63 != 0) && (hi != -1 || lo>>63 != 1) {
		return append(dst, n.ToString(scale)...)
	}
	v := int64(lo)
	if v < 0 {
		dst = append(dst, '-')
	}
	u := uint64(v)
	if v < 0 {
		u = -u // two's complement: right for math.MinInt64 too
	}
	var buf [20]byte
	digits := strconv.AppendUint(buf[:0], u, 10)
	switch {
	case scale <= 0:
		dst = append(dst, digits...)
		if scale < 0 && u != 0 {
			for range -scale {
				dst = append(dst, '0')
			}
		}
		return dst
	case len(digits) <= int(scale):
		dst = append(dst, '0', '.')
		for range int(scale) - len(digits) {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	}
	at := len(digits) - int(scale)
	dst = append(dst, digits[:at]...)
	dst = append(dst, '.')
	return append(dst, digits[at:]...)
}
