package partition

import (
	"context"
	"errors"
	"hash/fnv"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestEscapeAsHive(t *testing.T) {
	for in, want := range map[string]string{
		"FR":             "FR",
		"a/b":            "a%2Fb",
		"k=v":            "k%3Dv",
		"100%":           "100%25",
		"Zürich 東京":      "Zürich 東京",
		"tab\there":      "tab%09here",
		`q"#'*:?\^{[]`:   "q%22%23%27%2A%3A%3F%5C%5E%7B%5B%5D",
		"10:15:00":       "10%3A15%3A00",
		"del\x7f":        "del%7F",
		"space and plus": "space and plus",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFNVIsTheStandardOne(t *testing.T) {
	for _, s := range []string{"", "a", "customer-42", "東京"} {
		h := fnv.New32a()
		h.Write([]byte(s))
		if got := fnv32a(s); got != h.Sum32() {
			t.Errorf("fnv32a(%q) = %d, want %d", s, got, h.Sum32())
		}
	}
}

// batch builds a batch of a string, a timestamp, an int and a dictionary
// column.
func batch(t *testing.T, names []*string, times []*time.Time, ids []int64) arrow.RecordBatch {
	t.Helper()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for i := range names {
		if names[i] == nil {
			b.Field(0).AppendNull()
		} else {
			b.Field(0).(*array.StringBuilder).Append(*names[i])
		}
		if times[i] == nil {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(times[i].UnixMicro()))
		}
		b.Field(2).(*array.Int64Builder).Append(ids[i])
	}
	return b.NewRecordBatch()
}

func ptr[T any](v T) *T { return &v }

// Rows are regrouped by partition, each partition's rows in their order;
// the folders say the transformed values in the spec's time zone, nulls
// in the default partition.
func TestSplitGroupsRowsByPartition(t *testing.T) {
	at := func(s string) *time.Time { v, _ := time.Parse(time.RFC3339, s); return &v }
	rec := batch(t,
		[]*string{ptr("FR"), ptr("a/b=c"), nil, ptr("FR"), ptr(""), ptr("a/b=c")},
		[]*time.Time{at("2026-12-03T23:30:00Z"), at("2026-12-03T10:00:00Z"), nil, at("2026-12-04T00:30:00Z"), at("2026-12-03T01:00:00Z"), at("2026-12-03T11:00:00Z")},
		[]int64{1, 2, 3, 4, 5, 6})
	defer rec.Release()
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(rec.Schema(), Spec{Fields: []Field{{Column: "name"}, {Column: "at", Transform: Day}}, Location: paris}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	// The identity column's value is in its folder: left out of the files.
	// The day's is not the timestamp's: the timestamp stays.
	if got := p.Schema().NumFields(); got != 2 || p.Schema().Field(0).Name != "at" || p.Schema().Field(1).Name != "id" {
		t.Fatalf("the files hold %v", p.Schema())
	}
	g, err := p.Split(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Batch.Release()
	got := map[string][]int64{}
	ids := g.Batch.Column(1).(*array.Int64)
	for _, s := range g.Slices {
		for i := s.Offset; i < s.Offset+s.Rows; i++ {
			got[p.Partition(s.Partition).Path] = append(got[p.Partition(s.Partition).Path], ids.Value(int(i)))
		}
	}
	want := map[string][]int64{
		// 23:30 UTC on the 3rd and 00:30 UTC on the 4th are both the 4th
		// in Paris.
		"name=FR/at_day=2026-12-04/":                                         {1, 4},
		"name=a%2Fb%3Dc/at_day=2026-12-03/":                                  {2, 6},
		"name=__HIVE_DEFAULT_PARTITION__/at_day=__HIVE_DEFAULT_PARTITION__/": {3},
		// Hive has no folder for an empty string: it is the default one.
		"name=__HIVE_DEFAULT_PARTITION__/at_day=2026-12-03/": {5},
	}
	if len(got) != len(want) {
		t.Errorf("partitions %v, want %v", got, want)
	}
	for path, rows := range want {
		if !slices.Equal(got[path], rows) {
			t.Errorf("%s holds %v, want %v", path, got[path], rows)
		}
	}
	// The values unescaped, for the manifest.
	for i := range p.Count() {
		part := p.Partition(i)
		if part.Path == "name=a%2Fb%3Dc/at_day=2026-12-03/" && (part.Values[0].Text != "a/b=c" || part.Values[1].Name != "at_day") {
			t.Errorf("values %+v", part.Values)
		}
	}

	// A second batch: the same partitions keep their numbers.
	again := batch(t, []*string{ptr("FR")}, []*time.Time{at("2026-12-04T08:00:00Z")}, []int64{7})
	defer again.Release()
	g2, err := p.Split(context.Background(), again)
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Batch.Release()
	if len(g2.Slices) != 1 || p.Partition(g2.Slices[0].Partition).Path != "name=FR/at_day=2026-12-04/" || p.Count() != 4 {
		t.Errorf("the second batch: %+v, %d partitions", g2.Slices, p.Count())
	}
}

// The transforms' folder values.
func TestTransforms(t *testing.T) {
	at, _ := time.Parse(time.RFC3339, "2026-02-07T05:06:07Z")
	rec := batch(t, []*string{ptr("x")}, []*time.Time{&at}, []int64{42})
	defer rec.Release()
	for _, c := range []struct {
		f    Field
		want string
	}{
		{Field{Column: "at", Transform: Year}, "at_year=2026/"},
		{Field{Column: "at", Transform: Month}, "at_month=2026-02/"},
		{Field{Column: "at", Transform: Day, Name: "day"}, "day=2026-02-07/"},
		{Field{Column: "at", Transform: Hour}, "at_hour=2026-02-07-05/"},
		{Field{Column: "at"}, "at=2026-02-07 05%3A06%3A07/"},
		{Field{Column: "id"}, "id=42/"},
		{Field{Column: "id", Transform: Bucket, Buckets: 16}, "id_bucket=" + strconv.Itoa(int(fnv32a("42")%16)) + "/"},
	} {
		p, err := New(rec.Schema(), Spec{Fields: []Field{c.f}}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		g, err := p.Split(context.Background(), rec)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Partition(g.Slices[0].Partition).Path; got != c.want {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
		g.Batch.Release()
	}
}

// What cannot name folders is refused, naming the column.
func TestRefusesColumns(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "score", Type: arrow.PrimitiveTypes.Float64},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String)},
		{Name: "blob", Type: arrow.BinaryTypes.Binary},
		{Name: "name", Type: arrow.BinaryTypes.String},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32},
	}, nil)
	for _, f := range []Field{{Column: "nope"}, {Column: "score"}, {Column: "tags"}, {Column: "blob"}, {Column: "name", Transform: Day}, {Column: "day", Transform: Hour}} {
		_, err := New(schema, Spec{Fields: []Field{f}}, memory.DefaultAllocator)
		var ce *ColumnError
		if !errors.As(err, &ce) || ce.Column != f.Column {
			t.Errorf("%+v: %v", f, err)
		}
	}
	// Every column a partition column, not kept: the files would be empty.
	one := arrow.NewSchema([]arrow.Field{{Name: "name", Type: arrow.BinaryTypes.String}}, nil)
	if _, err := New(one, Spec{Fields: []Field{{Column: "name"}}}, memory.DefaultAllocator); err == nil {
		t.Error("a file without columns was allowed")
	}
	if _, err := New(one, Spec{Fields: []Field{{Column: "name"}}, KeepColumns: true}, memory.DefaultAllocator); err != nil {
		t.Error(err)
	}
}

// A null and an empty string name the same folder, so they are one
// partition: two partitions must never write the same keys.
func TestNullAndEmptyAreOnePartition(t *testing.T) {
	at, _ := time.Parse(time.RFC3339, "2026-12-03T10:00:00Z")
	rec := batch(t, []*string{nil, ptr(""), nil}, []*time.Time{&at, &at, &at}, []int64{1, 2, 3})
	defer rec.Release()
	p, err := New(rec.Schema(), Spec{Fields: []Field{{Column: "name"}}}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Split(context.Background(), rec)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Batch.Release()
	if len(g.Slices) != 1 || g.Slices[0].Rows != 3 || p.Count() != 1 || !p.Partition(0).Values[0].Null {
		t.Errorf("slices %+v, %d partitions", g.Slices, p.Count())
	}
}
