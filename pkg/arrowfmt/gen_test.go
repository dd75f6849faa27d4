package arrowfmt_test

import (
	"math"
	"math/big"
	"math/rand/v2"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/decimal256"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// column is one column of the test schema and how to make a random value.
type column struct {
	field arrow.Field
	// add appends a random value (or null) to the builder.
	add func(b array.Builder, r *rand.Rand)
}

// tricky strings exercise quoting and escaping.
var tricky = []string{"", "plain", "comma,inside", `quote"inside`, "line\nbreak", "cr\rhere", "tab\there", "pipe|here",
	"unicodé ✓ 中文", `back\slash`, " lead and trail ", "\x00nul", "semi;colon"}

func maybeNull(b array.Builder, r *rand.Rand) bool {
	if r.IntN(7) == 0 {
		b.AppendNull()
		return true
	}
	return false
}

// allColumns answers one column of every Arrow type a query produces.
func allColumns() []column {
	cols := []column{
		{arrow.Field{Name: "i8", Type: arrow.PrimitiveTypes.Int8, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Int8Builder).Append([]int8{math.MinInt8, math.MaxInt8, 0, int8(r.IntN(200) - 100)}[r.IntN(4)])
			}
		}},
		{arrow.Field{Name: "i16", Type: arrow.PrimitiveTypes.Int16, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Int16Builder).Append(int16(r.IntN(65536) - 32768))
			}
		}},
		{arrow.Field{Name: "i32", Type: arrow.PrimitiveTypes.Int32, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Int32Builder).Append(r.Int32() - math.MaxInt32/2)
			}
		}},
		{arrow.Field{Name: "i64", Type: arrow.PrimitiveTypes.Int64, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Int64Builder).Append([]int64{math.MinInt64, math.MaxInt64, r.Int64() - math.MaxInt64/2}[r.IntN(3)])
			}
		}},
		{arrow.Field{Name: "u8", Type: arrow.PrimitiveTypes.Uint8, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Uint8Builder).Append(uint8(r.IntN(256)))
			}
		}},
		{arrow.Field{Name: "u16", Type: arrow.PrimitiveTypes.Uint16, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Uint16Builder).Append(uint16(r.IntN(65536)))
			}
		}},
		{arrow.Field{Name: "u32", Type: arrow.PrimitiveTypes.Uint32, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Uint32Builder).Append(r.Uint32())
			}
		}},
		{arrow.Field{Name: "u64", Type: arrow.PrimitiveTypes.Uint64, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Uint64Builder).Append([]uint64{math.MaxUint64, r.Uint64()}[r.IntN(2)])
			}
		}},
		{arrow.Field{Name: "f16", Type: arrow.FixedWidthTypes.Float16, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Float16Builder).Append(float16.New(float32(r.NormFloat64() * 100)))
			}
		}},
		{arrow.Field{Name: "f32", Type: arrow.PrimitiveTypes.Float32, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Float32Builder).Append([]float32{float32(r.NormFloat64()), float32(math.Inf(1)), 1e-30}[r.IntN(3)])
			}
		}},
		{arrow.Field{Name: "f64", Type: arrow.PrimitiveTypes.Float64, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Float64Builder).Append([]float64{r.NormFloat64() * 1e6, math.NaN(), math.Inf(-1), 0.1, 1e300, -0.0}[r.IntN(6)])
			}
		}},
		{arrow.Field{Name: "dec128", Type: &arrow.Decimal128Type{Precision: 38, Scale: 4}, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				big37 := new(big.Int).Sub(new(big.Int).Exp(big.NewInt(10), big.NewInt(37), nil), big.NewInt(1))
				choices := []decimal128.Num{decimal128.FromI64(r.Int64() >> 8), decimal128.FromBigInt(big37), decimal128.FromBigInt(new(big.Int).Neg(big37)), decimal128.FromI64(5)}
				b.(*array.Decimal128Builder).Append(choices[r.IntN(len(choices))])
			}
		}},
		{arrow.Field{Name: "dec256", Type: &arrow.Decimal256Type{Precision: 76, Scale: 10}, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				v := new(big.Int).Exp(big.NewInt(10), big.NewInt(70), nil)
				v.Add(v, big.NewInt(r.Int64()))
				if r.IntN(2) == 0 {
					v.Neg(v)
				}
				b.(*array.Decimal256Builder).Append(decimal256.FromBigInt(v))
			}
		}},
		{arrow.Field{Name: "str", Type: arrow.BinaryTypes.String, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.StringBuilder).Append(tricky[r.IntN(len(tricky))])
			}
		}},
		{arrow.Field{Name: "large_str", Type: arrow.BinaryTypes.LargeString, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.LargeStringBuilder).Append(tricky[r.IntN(len(tricky))])
			}
		}},
		{arrow.Field{Name: "str_view", Type: arrow.BinaryTypes.StringView, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.StringViewBuilder).Append(tricky[r.IntN(len(tricky))] + " with a longer tail past twelve bytes")
			}
		}},
		{arrow.Field{Name: "bin", Type: arrow.BinaryTypes.Binary, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				v := make([]byte, r.IntN(12))
				for k := range v {
					v[k] = byte(r.IntN(256))
				}
				b.(*array.BinaryBuilder).Append(v)
			}
		}},
		{arrow.Field{Name: "large_bin", Type: arrow.BinaryTypes.LargeBinary, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.BinaryBuilder).Append([]byte{0, 1, 2, byte(r.IntN(256))})
			}
		}},
		{arrow.Field{Name: "fixed_bin", Type: &arrow.FixedSizeBinaryType{ByteWidth: 4}, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.FixedSizeBinaryBuilder).Append([]byte{byte(r.IntN(256)), 0xff, 0, 7})
			}
		}},
		{arrow.Field{Name: "flag", Type: arrow.FixedWidthTypes.Boolean, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.BooleanBuilder).Append(r.IntN(2) == 0)
			}
		}},
		{arrow.Field{Name: "d32", Type: arrow.FixedWidthTypes.Date32, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Date32Builder).Append(arrow.Date32(r.IntN(40000) - 10000))
			}
		}},
		{arrow.Field{Name: "d64", Type: arrow.FixedWidthTypes.Date64, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Date64Builder).Append(arrow.Date64(int64(r.IntN(40000)-10000) * 86400000))
			}
		}},
		{arrow.Field{Name: "t32", Type: arrow.FixedWidthTypes.Time32ms, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Time32Builder).Append(arrow.Time32(r.IntN(86400000)))
			}
		}},
		{arrow.Field{Name: "t64", Type: arrow.FixedWidthTypes.Time64ns, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.Time64Builder).Append(arrow.Time64(r.Int64N(86400 * 1e9)))
			}
		}},
		{arrow.Field{Name: "ts_s", Type: &arrow.TimestampType{Unit: arrow.Second}, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.TimestampBuilder).Append(arrow.Timestamp(r.Int64N(4e9) - 1e9))
			}
		}},
		{arrow.Field{Name: "ts_ms_utc", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.TimestampBuilder).Append(arrow.Timestamp(r.Int64N(4e12)))
			}
		}},
		{arrow.Field{Name: "ts_us_ny", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "America/New_York"}, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.TimestampBuilder).Append(arrow.Timestamp(r.Int64N(4e15)))
			}
		}},
		{arrow.Field{Name: "ts_ns_offset", Type: &arrow.TimestampType{Unit: arrow.Nanosecond, TimeZone: "+05:30"}, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.TimestampBuilder).Append(arrow.Timestamp(r.Int64N(4e18)))
			}
		}},
		{arrow.Field{Name: "dur", Type: arrow.FixedWidthTypes.Duration_ms, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.DurationBuilder).Append(arrow.Duration(r.Int64N(1e10) - 5e9))
			}
		}},
		{arrow.Field{Name: "iv_month", Type: arrow.FixedWidthTypes.MonthInterval, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.MonthIntervalBuilder).Append(arrow.MonthInterval(r.IntN(100) - 50))
			}
		}},
		{arrow.Field{Name: "iv_mdn", Type: arrow.FixedWidthTypes.MonthDayNanoInterval, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				b.(*array.MonthDayNanoIntervalBuilder).Append(arrow.MonthDayNanoInterval{Months: int32(r.IntN(24)), Days: int32(r.IntN(60)), Nanoseconds: r.Int64N(1e12)})
			}
		}},
		{arrow.Field{Name: "tags", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if maybeNull(b, r) {
				return
			}
			lb := b.(*array.ListBuilder)
			lb.Append(true)
			vb := lb.ValueBuilder().(*array.Int32Builder)
			for range r.IntN(4) {
				if r.IntN(5) == 0 {
					vb.AppendNull()
				} else {
					vb.Append(r.Int32N(1000))
				}
			}
		}},
		{arrow.Field{Name: "address", Type: arrow.StructOf(
			arrow.Field{Name: "city", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "zip", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			sb := b.(*array.StructBuilder)
			if maybeNull(b, r) {
				return
			}
			sb.Append(true)
			sb.FieldBuilder(0).(*array.StringBuilder).Append(tricky[r.IntN(len(tricky))])
			if r.IntN(4) == 0 {
				sb.FieldBuilder(1).AppendNull()
			} else {
				sb.FieldBuilder(1).(*array.Int32Builder).Append(r.Int32N(99999))
			}
		}},
		{arrow.Field{Name: "attrs", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if maybeNull(b, r) {
				return
			}
			mb := b.(*array.MapBuilder)
			mb.Append(true)
			for k := range r.IntN(3) {
				mb.KeyBuilder().(*array.StringBuilder).Append([]string{"a", "b", "c"}[k])
				mb.ItemBuilder().(*array.Int64Builder).Append(r.Int64N(100))
			}
		}},
		{arrow.Field{Name: "large_tags", Type: arrow.LargeListOf(arrow.PrimitiveTypes.Int64), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if maybeNull(b, r) {
				return
			}
			lb := b.(*array.LargeListBuilder)
			lb.Append(true)
			for range r.IntN(3) {
				lb.ValueBuilder().(*array.Int64Builder).Append(r.Int64())
			}
		}},
		{arrow.Field{Name: "triple", Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Float64), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if maybeNull(b, r) {
				return
			}
			lb := b.(*array.FixedSizeListBuilder)
			lb.Append(true)
			for range 3 {
				lb.ValueBuilder().(*array.Float64Builder).Append(r.NormFloat64())
			}
		}},
		{arrow.Field{Name: "codes", Type: arrow.MapOf(arrow.PrimitiveTypes.Int32, arrow.BinaryTypes.String), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if maybeNull(b, r) {
				return
			}
			mb := b.(*array.MapBuilder)
			mb.Append(true)
			for k := range r.IntN(3) {
				mb.KeyBuilder().(*array.Int32Builder).Append(int32(k * 10))
				mb.ItemBuilder().(*array.StringBuilder).Append(tricky[r.IntN(len(tricky))])
			}
		}},
		{arrow.Field{Name: "ree", Type: arrow.RunEndEncodedOf(arrow.PrimitiveTypes.Int32, arrow.BinaryTypes.String), Nullable: true}, func(b array.Builder, r *rand.Rand) {
			rb := b.(*array.RunEndEncodedBuilder)
			if r.IntN(7) == 0 {
				rb.AppendNull()
				return
			}
			rb.Append(1)
			rb.ValueBuilder().(*array.StringBuilder).Append([]string{"east", "west"}[r.IntN(2)])
		}},
		{arrow.Field{Name: "nothing", Type: arrow.Null, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			b.AppendNull()
		}},
		{arrow.Field{Name: "segment", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int16, ValueType: arrow.BinaryTypes.String}, Nullable: true}, func(b array.Builder, r *rand.Rand) {
			if !maybeNull(b, r) {
				_ = b.(*array.BinaryDictionaryBuilder).AppendString([]string{"gold", "silver", "bronze, plus"}[r.IntN(3)])
			}
		}},
	}
	return cols
}

// schemaOf answers the schema of cols.
func schemaOf(cols []column) *arrow.Schema {
	fields := make([]arrow.Field, len(cols))
	for k, c := range cols {
		fields[k] = c.field
	}
	return arrow.NewSchema(fields, nil)
}

// randomBatch builds rows random rows of cols.
func randomBatch(mem memory.Allocator, cols []column, rows int, r *rand.Rand) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, schemaOf(cols))
	defer b.Release()
	for range rows {
		for k, c := range cols {
			c.add(b.Field(k), r)
		}
	}
	return b.NewRecordBatch()
}
