// Package partition says which Hive-style partition each row of a record
// batch belongs to (`country=FR/signup_day=2026-12-03/`), and regroups a
// batch's rows by partition so that each partition's rows can go to its
// own files.
//
// Folder values are escaped as Hive escapes them, so that Hive, Spark,
// Trino and DuckDB read them back; a null (and, as in Hive, an empty
// string) is `__HIVE_DEFAULT_PARTITION__`.
package partition

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Default is the folder value of a null, as Hive writes it.
const Default = "__HIVE_DEFAULT_PARTITION__"

// MaxFields is the most partition fields a spec may have.
const MaxFields = 8

// Transform makes a folder's value from a column's.
type Transform int

// The transforms.
const (
	Identity Transform = iota
	Year
	Month
	Day
	Hour
	Bucket
)

func (t Transform) String() string {
	return [...]string{"identity", "year", "month", "day", "hour", "bucket"}[t]
}

// Field is one level of folders.
type Field struct {
	Column    string
	Transform Transform
	// Buckets is the number of buckets of the Bucket transform.
	Buckets int
	// Name is the folder's name before `=`; see FolderName.
	Name string
}

// FolderName answers the name before `=`: Name, or the column's for the
// identity transform, or `{column}_{transform}`.
func (f Field) FolderName() string {
	switch {
	case f.Name != "":
		return f.Name
	case f.Transform == Identity:
		return f.Column
	}
	return f.Column + "_" + f.Transform.String()
}

// Spec says how rows are partitioned.
type Spec struct {
	Fields []Field
	// KeepColumns also writes the partition columns inside the files.
	KeepColumns bool
	// Location is the time zone of the time transforms and of timestamp
	// values; UTC when nil.
	Location *time.Location
}

// ColumnError is a partition field the data cannot be partitioned by.
type ColumnError struct {
	Column  string
	Problem string
}

func (e *ColumnError) Error() string {
	return fmt.Sprintf("cannot partition by column %q: %s", e.Column, e.Problem)
}

// Value is one folder of a partition.
type Value struct {
	// Name is the folder's name before `=`.
	Name string
	// Text is the value as the folder says it, unescaped; Default for a
	// null.
	Text string
	Null bool
}

// Partition is one partition: its folder path and values.
type Partition struct {
	// Path is the escaped folders, each ending in `/`.
	Path   string
	Values []Value
}

// Partitioner partitions the batches of one schema.
type Partitioner struct {
	spec    Spec
	fields  []*field
	out     *arrow.Schema // the files' schema
	written []int         // the input columns the files hold
	mem     memory.Allocator

	// byKey numbers each distinct tuple of field ids; single numbers
	// partitions when there is one field (the common case, no tuple).
	byKey  map[[MaxFields]uint32]int
	single []int
	parts  []*Partition
	byPath map[string]int
}

// New checks spec against schema: each field's column must exist at the
// top level, be of a type a folder can name (not nested, not floating
// point, not binary) and suit its transform.
func New(schema *arrow.Schema, spec Spec, mem memory.Allocator) (*Partitioner, error) {
	if len(spec.Fields) == 0 || len(spec.Fields) > MaxFields {
		return nil, fmt.Errorf("partition: 1 to %d fields, not %d", MaxFields, len(spec.Fields))
	}
	if spec.Location == nil {
		spec.Location = time.UTC
	}
	p := &Partitioner{spec: spec, mem: mem, byKey: map[[MaxFields]uint32]int{}, byPath: map[string]int{}}
	used := map[int]bool{}
	for _, f := range spec.Fields {
		idx := schema.FieldIndices(f.Column)
		if len(idx) == 0 {
			return nil, &ColumnError{Column: f.Column, Problem: "the data has no such column (names are case-sensitive)"}
		}
		if len(idx) > 1 {
			return nil, &ColumnError{Column: f.Column, Problem: "the data has several columns of that name"}
		}
		fd, err := newField(f, idx[0], schema.Field(idx[0]).Type, spec.Location)
		if err != nil {
			return nil, err
		}
		p.fields = append(p.fields, fd)
		// A column whose folder holds its value is left out of the files;
		// one that only names a bucket, a day... stays, or it would be lost.
		if f.Transform == Identity {
			used[idx[0]] = true
		}
	}
	var fields []arrow.Field
	for i, f := range schema.Fields() {
		if spec.KeepColumns || !used[i] {
			p.written = append(p.written, i)
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 {
		return nil, &ColumnError{Column: spec.Fields[0].Column, Problem: "every column is a partition column, so the files would hold none: keep the partition columns in the files, or send another column"}
	}
	md := schema.Metadata()
	p.out = arrow.NewSchema(fields, &md)
	return p, nil
}

// Schema answers the schema of the files.
func (p *Partitioner) Schema() *arrow.Schema { return p.out }

// Partition answers partition i, numbered in the order first seen.
func (p *Partitioner) Partition(i int) *Partition { return p.parts[i] }

// Count answers how many partitions were seen.
func (p *Partitioner) Count() int { return len(p.parts) }

// Slice is one partition's rows in a Grouped batch.
type Slice struct {
	Partition int
	Offset    int64
	Rows      int64
}

// Grouped is a batch's rows regrouped by partition: Batch holds the
// files' columns with each partition's rows together, in the order of
// Slices.
type Grouped struct {
	Batch  arrow.RecordBatch
	Slices []Slice
}

// Split regroups rec's rows by partition, keeping each partition's rows in
// their order. A batch whose rows are all in one partition is not copied.
// The caller releases the answer's Batch.
func (p *Partitioner) Split(ctx context.Context, rec arrow.RecordBatch) (Grouped, error) {
	n := int(rec.NumRows())
	ids := make([][]uint32, len(p.fields))
	for k, f := range p.fields {
		ids[k] = make([]uint32, n)
		if err := f.ids(rec.Column(f.index), ids[k]); err != nil {
			return Grouped{}, err
		}
	}
	rowPart := make([]int32, n)
	for i := range n {
		rowPart[i] = int32(p.partitionOf(ids, i))
	}
	cols := make([]arrow.Array, len(p.written))
	for k, i := range p.written {
		cols[k] = rec.Column(i)
	}
	projected := array.NewRecordBatch(p.out, cols, rec.NumRows())
	// Count rows per partition, in the order partitions first appear.
	var order []int32
	count := make([]int64, len(p.parts))
	for _, part := range rowPart {
		if count[part] == 0 {
			order = append(order, part)
		}
		count[part]++
	}
	if len(order) <= 1 {
		var slices []Slice
		if n > 0 {
			slices = []Slice{{Partition: int(order[0]), Rows: int64(n)}}
		}
		return Grouped{Batch: projected, Slices: slices}, nil
	}
	defer projected.Release()
	next := make([]int64, len(p.parts))
	slices := make([]Slice, 0, len(order))
	off := int64(0)
	for _, part := range order {
		next[part] = off
		slices = append(slices, Slice{Partition: int(part), Offset: off, Rows: count[part]})
		off += count[part]
	}
	b := array.NewInt64Builder(p.mem)
	defer b.Release()
	b.Resize(n)
	perm := make([]int64, n)
	for i, part := range rowPart {
		perm[next[part]] = int64(i)
		next[part]++
	}
	b.AppendValues(perm, nil)
	idx := b.NewInt64Array()
	defer idx.Release()
	out, err := compute.Take(compute.WithAllocator(ctx, p.mem), *compute.DefaultTakeOptions(), &compute.RecordDatum{Value: projected}, &compute.ArrayDatum{Value: idx.Data()})
	if err != nil {
		return Grouped{}, fmt.Errorf("partition: regroup rows: %w", err)
	}
	return Grouped{Batch: out.(*compute.RecordDatum).Value, Slices: slices}, nil
}

// partitionOf answers the partition of row i, numbering a new one.
func (p *Partitioner) partitionOf(ids [][]uint32, i int) int {
	if len(ids) == 1 {
		id := ids[0][i]
		if int(id) < len(p.single) && p.single[id] > 0 {
			return p.single[id] - 1
		}
		part := p.add([]uint32{id})
		for len(p.single) <= int(id) {
			p.single = append(p.single, 0)
		}
		p.single[id] = part + 1
		return part
	}
	var key [MaxFields]uint32
	for k := range ids {
		key[k] = ids[k][i]
	}
	if part, ok := p.byKey[key]; ok {
		return part
	}
	part := p.add(key[:len(ids)])
	p.byKey[key] = part
	return part
}

// add numbers a new partition of the fields' ids.
func (p *Partitioner) add(ids []uint32) int {
	part := &Partition{}
	var path strings.Builder
	for k, f := range p.fields {
		v := Value{Name: f.folder}
		// Hive has no folder for an empty string: it reads back as null.
		if ids[k] == 0 || f.texts[ids[k]] == "" {
			v.Text, v.Null = Default, true
		} else {
			v.Text = f.texts[ids[k]]
		}
		part.Values = append(part.Values, v)
		path.WriteString(Escape(f.folder))
		path.WriteByte('=')
		if v.Null {
			path.WriteString(Default)
		} else {
			path.WriteString(Escape(v.Text))
		}
		path.WriteByte('/')
	}
	part.Path = path.String()
	// Values that name the same folders are one partition (a null and, as
	// Hive has it, an empty string): the same keys must not be written
	// twice.
	if i, ok := p.byPath[part.Path]; ok {
		return i
	}
	p.parts = append(p.parts, part)
	p.byPath[part.Path] = len(p.parts) - 1
	return len(p.parts) - 1
}

// Escape percent-encodes what Hive escapes in a folder name or value:
// control characters, `"#%'*/:=?\^{[]` and DEL.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || strings.IndexByte(`"#%'*/:=?\^{[]`, c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// field numbers the distinct folder values of one partition field: id 0
// is null, and texts[id] says each other one.
type field struct {
	Field
	folder string
	index  int
	loc    *time.Location
	// ids fills out with each row's value id.
	ids   func(arr arrow.Array, out []uint32) error
	texts []string
	byStr map[string]uint32
	byInt map[int64]uint32
}

func newField(f Field, index int, typ arrow.DataType, loc *time.Location) (*field, error) {
	fd := &field{Field: f, folder: f.FolderName(), index: index, loc: loc, texts: []string{""}, byStr: map[string]uint32{}, byInt: map[int64]uint32{}}
	ids, err := fd.extractor(typ)
	if err != nil {
		return nil, err
	}
	fd.ids = ids
	return fd, nil
}

// text numbers a value by its folder text.
func (f *field) text(s string) uint32 {
	if f.Transform == Bucket {
		return f.number(int64(fnv32a(s) % uint32(f.Buckets)))
	}
	if id, ok := f.byStr[s]; ok {
		return id
	}
	f.texts = append(f.texts, strings.Clone(s))
	id := uint32(len(f.texts) - 1)
	f.byStr[f.texts[id]] = id
	return id
}

// fnv32a is the 32-bit FNV-1a hash of s (hash/fnv's, without its
// allocations on the per-row path).
func fnv32a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// number numbers an integer value (a bucket, or a transformed time).
func (f *field) number(v int64) uint32 {
	if id, ok := f.byInt[v]; ok {
		return id
	}
	var s string
	switch f.Transform {
	case Year:
		s = fmt.Sprintf("%04d", v)
	case Month:
		s = fmt.Sprintf("%04d-%02d", v/100, v%100)
	case Day:
		s = fmt.Sprintf("%04d-%02d-%02d", v/10000, v/100%100, v%100)
	case Hour:
		s = fmt.Sprintf("%04d-%02d-%02d-%02d", v/1000000, v/10000%100, v/100%100, v%100)
	default:
		s = strconv.FormatInt(v, 10)
	}
	f.texts = append(f.texts, s)
	id := uint32(len(f.texts) - 1)
	f.byInt[v] = id
	return id
}

// civil answers the transformed number of a time: 2026 for Year, 202612
// for Month, 20261203 for Day, 2026120310 for Hour.
func (f *field) civil(t time.Time) int64 {
	y, m, d := t.Date()
	switch f.Transform {
	case Year:
		return int64(y)
	case Month:
		return int64(y)*100 + int64(m)
	case Day:
		return int64(y)*10000 + int64(m)*100 + int64(d)
	}
	return ((int64(y)*100+int64(m))*100+int64(d))*100 + int64(t.Hour())
}

// extractor answers how the field reads a column of typ.
func (f *field) extractor(typ arrow.DataType) (func(arrow.Array, []uint32) error, error) {
	refuse := func(why string) (func(arrow.Array, []uint32) error, error) {
		return nil, &ColumnError{Column: f.Column, Problem: why}
	}
	timeTransform := f.Transform == Year || f.Transform == Month || f.Transform == Day || f.Transform == Hour
	switch t := typ.(type) {
	case *arrow.DictionaryType:
		values, err := f.extractor(t.ValueType)
		if err != nil {
			return nil, err
		}
		return func(arr arrow.Array, out []uint32) error {
			d := arr.(*array.Dictionary)
			dict := make([]uint32, d.Dictionary().Len())
			if err := values(d.Dictionary(), dict); err != nil {
				return err
			}
			for i := range out {
				if d.IsNull(i) {
					out[i] = 0
				} else {
					out[i] = dict[d.GetValueIndex(i)]
				}
			}
			return nil
		}, nil
	case *arrow.Float16Type, *arrow.Float32Type, *arrow.Float64Type:
		return refuse("floating-point values make poor folder names (0.1 + 0.2 is not 0.3): partition by a rounded integer or decimal column, or by bucket")
	case arrow.NestedType:
		return refuse(fmt.Sprintf("%s is a nested type: partition by a top-level scalar column", typ))
	case *arrow.BinaryType, *arrow.LargeBinaryType, *arrow.BinaryViewType, *arrow.FixedSizeBinaryType:
		return refuse("binary values cannot name folders: partition by a text column, or by bucket of one")
	}
	if f.Transform == Hour {
		if _, ok := typ.(*arrow.TimestampType); !ok {
			return refuse(fmt.Sprintf("the hour transform needs a timestamp column, not %s", typ))
		}
	}
	if timeTransform {
		switch t := typ.(type) {
		case *arrow.Date32Type:
			return each[*array.Date32](func(a *array.Date32, i int) uint32 {
				return f.number(f.civil(time.Unix(int64(a.Value(i))*86400, 0).UTC()))
			}), nil
		case *arrow.Date64Type:
			return each[*array.Date64](func(a *array.Date64, i int) uint32 {
				return f.number(f.civil(time.UnixMilli(int64(a.Value(i))).UTC()))
			}), nil
		case *arrow.TimestampType:
			toTime, err := t.GetToTimeFunc()
			if err != nil {
				return refuse(err.Error())
			}
			return each[*array.Timestamp](func(a *array.Timestamp, i int) uint32 {
				return f.number(f.civil(toTime(a.Value(i)).In(f.loc)))
			}), nil
		}
		return refuse(fmt.Sprintf("the %s transform needs a date or timestamp column, not %s", f.Transform, typ))
	}
	// Identity and bucket: the value's text.
	switch t := typ.(type) {
	case *arrow.StringType:
		return each[*array.String](func(a *array.String, i int) uint32 { return f.text(a.Value(i)) }), nil
	case *arrow.LargeStringType:
		return each[*array.LargeString](func(a *array.LargeString, i int) uint32 { return f.text(a.Value(i)) }), nil
	case *arrow.StringViewType:
		return each[*array.StringView](func(a *array.StringView, i int) uint32 { return f.text(a.Value(i)) }), nil
	case *arrow.BooleanType:
		return each[*array.Boolean](func(a *array.Boolean, i int) uint32 { return f.text(strconv.FormatBool(a.Value(i))) }), nil
	case *arrow.Int8Type:
		return integers(f, func(a *array.Int8, i int) int64 { return int64(a.Value(i)) }), nil
	case *arrow.Int16Type:
		return integers(f, func(a *array.Int16, i int) int64 { return int64(a.Value(i)) }), nil
	case *arrow.Int32Type:
		return integers(f, func(a *array.Int32, i int) int64 { return int64(a.Value(i)) }), nil
	case *arrow.Int64Type:
		return integers(f, func(a *array.Int64, i int) int64 { return a.Value(i) }), nil
	case *arrow.Uint8Type:
		return integers(f, func(a *array.Uint8, i int) int64 { return int64(a.Value(i)) }), nil
	case *arrow.Uint16Type:
		return integers(f, func(a *array.Uint16, i int) int64 { return int64(a.Value(i)) }), nil
	case *arrow.Uint32Type:
		return integers(f, func(a *array.Uint32, i int) int64 { return int64(a.Value(i)) }), nil
	case *arrow.Uint64Type:
		return each[*array.Uint64](func(a *array.Uint64, i int) uint32 {
			if v := a.Value(i); v > math.MaxInt64 {
				return f.text(strconv.FormatUint(v, 10))
			}
			return f.identityInt(int64(a.Value(i)))
		}), nil
	case *arrow.Decimal128Type:
		return each[*array.Decimal128](func(a *array.Decimal128, i int) uint32 { return f.text(a.Value(i).ToString(t.Scale)) }), nil
	case *arrow.Decimal256Type:
		return each[*array.Decimal256](func(a *array.Decimal256, i int) uint32 { return f.text(a.Value(i).ToString(t.Scale)) }), nil
	case *arrow.Date32Type:
		return each[*array.Date32](func(a *array.Date32, i int) uint32 {
			return f.text(time.Unix(int64(a.Value(i))*86400, 0).UTC().Format(time.DateOnly))
		}), nil
	case *arrow.Date64Type:
		return each[*array.Date64](func(a *array.Date64, i int) uint32 {
			return f.text(time.UnixMilli(int64(a.Value(i))).UTC().Format(time.DateOnly))
		}), nil
	case *arrow.TimestampType:
		toTime, err := t.GetToTimeFunc()
		if err != nil {
			return refuse(err.Error())
		}
		return each[*array.Timestamp](func(a *array.Timestamp, i int) uint32 {
			return f.text(toTime(a.Value(i)).In(f.loc).Format("2006-01-02 15:04:05.999999999"))
		}), nil
	case *arrow.NullType:
		return func(_ arrow.Array, out []uint32) error { clear(out); return nil }, nil
	}
	return refuse(fmt.Sprintf("folders cannot be named by values of type %s", typ))
}

// identityInt numbers an integer by its text (identity), or its bucket.
func (f *field) identityInt(v int64) uint32 {
	if f.Transform == Bucket {
		return f.text(strconv.FormatInt(v, 10))
	}
	if id, ok := f.byInt[v]; ok {
		return id
	}
	f.texts = append(f.texts, strconv.FormatInt(v, 10))
	id := uint32(len(f.texts) - 1)
	f.byInt[v] = id
	return id
}

func integers[A arrow.Array](f *field, value func(A, int) int64) func(arrow.Array, []uint32) error {
	return each[A](func(a A, i int) uint32 { return f.identityInt(value(a, i)) })
}

// each answers an extractor that numbers every non-null row with id.
func each[A arrow.Array](id func(A, int) uint32) func(arrow.Array, []uint32) error {
	return func(arr arrow.Array, out []uint32) error {
		a, ok := arr.(A)
		if !ok {
			return fmt.Errorf("partition: a column of %s arrived as %T", arr.DataType(), arr)
		}
		for i := range out {
			if a.IsNull(i) {
				out[i] = 0
			} else {
				out[i] = id(a, i)
			}
		}
		return nil
	}
}
