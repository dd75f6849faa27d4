package arrowfmt_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// duckdb runs queries in DuckDB, a reader that is not ours.
func duckdb(t *testing.T, queries ...string) [][]map[string]any {
	t.Helper()
	return testenv.DuckDB(t, queries...)
}

func sqlString(s string) string { return testenv.SQLString(s) }

// Issue 10, items 1, 3 and 4, read back by DuckDB: NULLs stay NULLs and
// values stay values, the string \N and the empty string included, in
// every quote mode that can tell them apart, configured as a reader would
// (allow_quoted_nulls off: a quoted field is a value).
func TestDelimitedNullsReadBackInDuckDB(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	values := []*string{ptr(`\N`), ptr(""), nil, ptr("plain"), ptr("a,b"), ptr("NULL")}
	ib := array.NewInt64Builder(memory.DefaultAllocator)
	sb := array.NewStringBuilder(memory.DefaultAllocator)
	for i, v := range values {
		ib.Append(int64(i + 1))
		if v == nil {
			sb.AppendNull()
		} else {
			sb.Append(*v)
		}
	}
	ids, strs := ib.NewArray(), sb.NewArray()
	ib.Release()
	sb.Release()
	rec := array.NewRecordBatch(schema, []arrow.Array{ids, strs}, int64(len(values)))
	ids.Release()
	strs.Release()
	defer rec.Release()

	dir := t.TempDir()
	cases := []struct {
		name string
		opts arrowfmt.DelimitedOptions
		// read is DuckDB's read_csv options; want is what each row reads as
		// ("<null>" for NULL).
		read string
		want []string
	}{
		{"minimal, null text \\N", arrowfmt.DelimitedOptions{NullValue: `\N`}, `nullstr='\N', allow_quoted_nulls=false`,
			[]string{`\N`, "", "<null>", "plain", "a,b", "NULL"}},
		{"minimal, empty null text", arrowfmt.DelimitedOptions{}, `nullstr='', allow_quoted_nulls=false`,
			[]string{`\N`, "", "<null>", "plain", "a,b", "NULL"}},
		{"non-numeric, null text NULL", arrowfmt.DelimitedOptions{NullValue: "NULL", Quote: arrowfmt.QuoteNonNumeric}, `nullstr='NULL', allow_quoted_nulls=false`,
			[]string{`\N`, "", "<null>", "plain", "a,b", "NULL"}},
		{"all non-null fields", arrowfmt.DelimitedOptions{Quote: arrowfmt.QuoteAllNonNull}, `nullstr='', allow_quoted_nulls=false`,
			[]string{`\N`, "", "<null>", "plain", "a,b", "NULL"}},
		// "All fields" quotes NULLs too: read with quoted fields as values,
		// the NULL row is its quoted null text, which is how readers tell
		// the two modes apart (allow_quoted_nulls decides).
		{"all fields", arrowfmt.DelimitedOptions{Quote: arrowfmt.QuoteAll, NullValue: "NULL"}, `nullstr='NULL', allow_quoted_nulls=false`,
			[]string{`\N`, "", "NULL", "plain", "a,b", "NULL"}},
	}
	var queries []string
	for i, c := range cases {
		var buf bytes.Buffer
		w, err := arrowfmt.NewDelimited(&buf, schema, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("case%d.csv", i))
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		queries = append(queries, fmt.Sprintf(`SELECT id, s FROM read_csv(%s, header=false, columns={'id': 'BIGINT', 's': 'VARCHAR'}, quote='"', escape='"', %s) ORDER BY id`, sqlString(path), c.read))
	}
	results := duckdb(t, queries...)
	for i, c := range cases {
		var got []string
		for _, row := range results[i] {
			if row["s"] == nil {
				got = append(got, "<null>")
			} else {
				got = append(got, fmt.Sprint(row["s"]))
			}
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: DuckDB reads %q, want %q", c.name, got, c.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
