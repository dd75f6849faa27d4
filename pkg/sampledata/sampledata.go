// Package sampledata generates the customer tables that the demo, the
// benchmarks and the end-to-end tests deliver: deterministic for a seed,
// produced batch by batch so that a table of any size takes the memory of
// one batch.
package sampledata

import (
	"fmt"
	"math/rand/v2"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Customer360Schema is a customer 360 table: 20 columns of the types a
// query produces (integers, floats, decimals, strings, dictionaries,
// booleans, dates, timestamps with and without a zone, a list).
var Customer360Schema = arrow.NewSchema([]arrow.Field{
	{Name: "customer_id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "email", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "first_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "last_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "city", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "country", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}, Nullable: true},
	{Name: "age", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "lifetime_value", Type: &arrow.Decimal128Type{Precision: 18, Scale: 2}, Nullable: true},
	{Name: "orders", Type: arrow.PrimitiveTypes.Int32},
	{Name: "avg_basket", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "churn_score", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
	{Name: "opted_in", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "signup_date", Type: arrow.FixedWidthTypes.Date32},
	{Name: "last_seen", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "last_order", Type: &arrow.TimestampType{Unit: arrow.Millisecond}, Nullable: true},
	{Name: "segment", Type: &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}},
	{Name: "phone", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "zip", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "interests", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	{Name: "loyalty_points", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
}, nil)

var (
	firstNames = []string{"Ann", "Bob", "Chen", "Dara", "Eve", "Farid", "Gus", "Hana"}
	lastNames  = []string{"Smith", "O'Neil", "Nguyen", "García", "Kowalski", "Okafor"}
	cities     = []string{"Seattle", "New York, NY", "Paris", "São Paulo", "Lagos", "Tokyo"}
	countries  = []string{"US", "FR", "BR", "NG", "JP"}
	segments   = []string{"gold", "silver", "bronze", "at risk"}
	interests  = []string{"running", "cooking", "travel", "games", "music"}
)

// CustomerSchema is the narrow customer table: 8 columns, the kind of
// table most exports are (a sorted id, a unique string, low-cardinality
// strings, a money amount in cents, a small count, a flag, and a creation
// time that grows with the id).
var CustomerSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "email", Type: arrow.BinaryTypes.String},
	{Name: "first_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "ltv", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "orders", Type: arrow.PrimitiveTypes.Int32},
	{Name: "active", Type: arrow.FixedWidthTypes.Boolean},
	{Name: "created_at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
	{Name: "state", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

var states = []string{"CA", "NY", "TX", "WA", "FL", "IL", "OR", "MA"}

// Customers yields the rows of a customer table in batches. It
// implements array.RecordReader.
type Customers struct {
	schema    *arrow.Schema
	fill      func(c *Customers, b *array.RecordBuilder, n int64)
	mem       memory.Allocator
	rows      int64
	batchRows int
	r         *rand.Rand
	next      int64 // id of the last row made
	cur       arrow.RecordBatch
	refs      int
}

// NewCustomer360 answers a reader of rows customers in batches of
// batchRows (64Ki when 0), the same rows for the same seed.
func NewCustomer360(mem memory.Allocator, rows int64, batchRows int, seed uint64) *Customers {
	return newCustomers(Customer360Schema, fill360, mem, rows, batchRows, seed, 360)
}

// NewCustomers answers a reader of rows of the narrow customer table
// (CustomerSchema) in batches of batchRows (64Ki when 0), the same rows for
// the same seed.
func NewCustomers(mem memory.Allocator, rows int64, batchRows int, seed uint64) *Customers {
	return newCustomers(CustomerSchema, fillNarrow, mem, rows, batchRows, seed, 8)
}

func newCustomers(schema *arrow.Schema, fill func(*Customers, *array.RecordBuilder, int64), mem memory.Allocator, rows int64, batchRows int, seed, stream uint64) *Customers {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	if batchRows <= 0 {
		batchRows = 64 * 1024
	}
	return &Customers{schema: schema, fill: fill, mem: mem, rows: rows, batchRows: batchRows, r: rand.New(rand.NewPCG(seed, stream)), refs: 1}
}

// Schema implements array.RecordReader.
func (c *Customers) Schema() *arrow.Schema { return c.schema }

// Retain implements array.RecordReader.
func (c *Customers) Retain() { c.refs++ }

// Release implements array.RecordReader.
func (c *Customers) Release() {
	if c.refs--; c.refs == 0 && c.cur != nil {
		c.cur.Release()
		c.cur = nil
	}
}

// Err implements array.RecordReader; generating cannot fail.
func (c *Customers) Err() error { return nil }

// RecordBatch answers the current batch, valid until Next.
func (c *Customers) RecordBatch() arrow.RecordBatch { return c.cur }

// Record answers the current batch (the older name of RecordBatch).
//
// Deprecated: use RecordBatch.
func (c *Customers) Record() arrow.RecordBatch { return c.cur }

// Next makes the next batch; false at the end.
func (c *Customers) Next() bool {
	if c.cur != nil {
		c.cur.Release()
		c.cur = nil
	}
	if c.next >= c.rows {
		return false
	}
	n := min(int64(c.batchRows), c.rows-c.next)
	b := array.NewRecordBuilder(c.mem, c.schema)
	defer b.Release()
	c.fill(c, b, n)
	c.cur = b.NewRecordBatch()
	return true
}

func fillNarrow(c *Customers, b *array.RecordBuilder, n int64) {
	r := c.r
	for range n {
		c.next++
		id := c.next
		b.Field(0).(*array.Int64Builder).Append(id)
		b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("customer%d@example.com", id))
		b.Field(2).(*array.StringBuilder).Append(firstNames[r.IntN(len(firstNames))])
		b.Field(3).(*array.Float64Builder).Append(float64(r.IntN(500_000)) / 100)
		b.Field(4).(*array.Int32Builder).Append(int32(r.IntN(200)))
		b.Field(5).(*array.BooleanBuilder).Append(r.IntN(4) != 0)
		// Customers sign up about every 30 s, in id order.
		b.Field(6).(*array.TimestampBuilder).Append(arrow.Timestamp(1.6e15 + id*30_000_000 + r.Int64N(30_000_000)))
		b.Field(7).(*array.StringBuilder).Append(states[r.IntN(len(states))])
	}
}

func fill360(c *Customers, b *array.RecordBuilder, n int64) {
	r := c.r
	for range n {
		c.next++
		id := c.next
		b.Field(0).(*array.Int64Builder).Append(id)
		b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("customer%d@example.com", id))
		b.Field(2).(*array.StringBuilder).Append(firstNames[r.IntN(len(firstNames))])
		b.Field(3).(*array.StringBuilder).Append(lastNames[r.IntN(len(lastNames))])
		b.Field(4).(*array.StringBuilder).Append(cities[r.IntN(len(cities))])
		_ = b.Field(5).(*array.BinaryDictionaryBuilder).AppendString(countries[r.IntN(len(countries))])
		b.Field(6).(*array.Int32Builder).Append(int32(18 + r.IntN(70)))
		b.Field(7).(*array.Decimal128Builder).Append(decimal128.FromI64(r.Int64N(10_000_000)))
		b.Field(8).(*array.Int32Builder).Append(int32(r.IntN(200)))
		b.Field(9).(*array.Float64Builder).Append(r.Float64() * 300)
		b.Field(10).(*array.Float32Builder).Append(r.Float32())
		b.Field(11).(*array.BooleanBuilder).Append(r.IntN(2) == 0)
		b.Field(12).(*array.Date32Builder).Append(arrow.Date32(17000 + r.IntN(3000)))
		b.Field(13).(*array.TimestampBuilder).Append(arrow.Timestamp(1.7e15 + r.Int64N(1e14)))
		if r.IntN(10) == 0 {
			b.Field(14).AppendNull()
		} else {
			b.Field(14).(*array.TimestampBuilder).Append(arrow.Timestamp(1.7e12 + r.Int64N(1e11)))
		}
		_ = b.Field(15).(*array.BinaryDictionaryBuilder).AppendString(segments[r.IntN(len(segments))])
		b.Field(16).(*array.StringBuilder).Append(fmt.Sprintf("+1-555-%04d", r.IntN(10000)))
		b.Field(17).(*array.StringBuilder).Append(fmt.Sprintf("%05d", r.IntN(100000)))
		lb := b.Field(18).(*array.ListBuilder)
		lb.Append(true)
		for range r.IntN(3) {
			lb.ValueBuilder().(*array.StringBuilder).Append(interests[r.IntN(len(interests))])
		}
		b.Field(19).(*array.Int64Builder).Append(r.Int64N(100000))
	}
}

// All answers every batch of a table small enough to hold, for tests and
// benchmarks that reuse the same batches; the caller releases them.
func All(c *Customers) []arrow.RecordBatch {
	defer c.Release()
	var out []arrow.RecordBatch
	for c.Next() {
		rec := c.RecordBatch()
		rec.Retain()
		out = append(out, rec)
	}
	return out
}
