package arrowfmt_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// duckdbDir is where `make tools` installs DuckDB for Node (tools/duckdb).
func duckdbDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SLUICE_TOOLS_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "sluice", "tools")
	}
	dir = filepath.Join(dir, "duckdb")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api")); err != nil {
		t.Fatalf("DuckDB for Node is not installed in %s: run `make tools` (it needs node and npm: apt-get install nodejs npm)", dir)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not on PATH: apt-get install nodejs")
	}
	return dir
}

// duckdb runs queries in DuckDB, a reader that is not ours, and answers
// each query's rows.
func duckdb(t *testing.T, queries ...string) [][]map[string]any {
	t.Helper()
	dir := duckdbDir(t)
	script, err := os.CreateTemp(dir, "query-*.mjs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(script.Name())
	fmt.Fprint(script, `import { DuckDBInstance } from '@duckdb/node-api';
import { readFileSync } from 'node:fs';
const queries = JSON.parse(readFileSync(0, 'utf8'));
const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
const out = [];
for (const q of queries) out.push((await c.runAndReadAll(q)).getRowObjectsJson());
console.log(JSON.stringify(out));
`)
	script.Close()
	in, _ := json.Marshal(queries)
	cmd := exec.Command("node", script.Name())
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s", err, stderr.String())
	}
	var rows [][]map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("duckdb answered %q: %v", out, err)
	}
	return rows
}

func sqlString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

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
