package arrowfmt_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// duckTypes are DuckDB's types for the sample tables' columns, for reading
// the same rows from CSV.
var duckTypes = map[string]string{
	"id": "BIGINT", "email": "VARCHAR", "first_name": "VARCHAR", "ltv": "DOUBLE", "orders": "INTEGER", "active": "BOOLEAN",
	"created_at": "TIMESTAMPTZ", "state": "VARCHAR",
	"customer_id": "BIGINT", "last_name": "VARCHAR", "city": "VARCHAR", "country": "VARCHAR", "age": "INTEGER",
	"lifetime_value": "DECIMAL(18,2)", "avg_basket": "DOUBLE", "churn_score": "FLOAT", "opted_in": "BOOLEAN",
	"signup_date": "DATE", "last_seen": "TIMESTAMPTZ", "last_order": "TIMESTAMP", "segment": "VARCHAR", "phone": "VARCHAR",
	"zip": "VARCHAR", "loyalty_points": "BIGINT",
}

// Every encoding the writer chooses (delta integers and timestamps, delta
// strings, dictionaries, decimals as integers, v1 and v2 pages, with every
// codec) reads back in DuckDB, a reader that is not ours, as the same rows
// DuckDB reads from a CSV of the same batches.
func TestParquetReadsBackInDuckDB(t *testing.T) {
	dir := t.TempDir()
	type table struct {
		name string
		c    *sampledata.Customers
	}
	variants := []struct {
		name string
		opts arrowfmt.ParquetOptions
	}{
		{"auto-snappy", arrowfmt.ParquetOptions{}},
		{"auto-zstd-v2", arrowfmt.ParquetOptions{Codec: arrowfmt.Zstd, DataPage: arrowfmt.DataPageV2}},
		{"never-gzip", arrowfmt.ParquetOptions{Codec: arrowfmt.Gzip, Dictionary: arrowfmt.DictionaryNever}},
		{"always-none-v2", arrowfmt.ParquetOptions{Codec: arrowfmt.Uncompressed, Dictionary: arrowfmt.DictionaryAlways, DataPage: arrowfmt.DataPageV2}},
	}
	var queries, labels []string
	for _, tb := range []table{
		{"narrow", sampledata.NewCustomers(nil, 20_000, 3000, 5)},
		{"c360", sampledata.NewCustomer360(nil, 20_000, 3000, 5)},
	} {
		schema := tb.c.Schema()
		recs := sampledata.All(tb.c)
		defer func() {
			for _, r := range recs {
				r.Release()
			}
		}()
		// The list column has no CSV form DuckDB reads back as a list:
		// the CSV side leaves it out, and it is checked by element count.
		var cols, types []string
		for _, f := range schema.Fields() {
			if f.Type.ID() == arrow.LIST {
				types = append(types, fmt.Sprintf("'%s': 'VARCHAR'", f.Name))
				continue
			}
			cols = append(cols, f.Name)
			types = append(types, fmt.Sprintf("'%s': '%s'", f.Name, duckTypes[f.Name]))
		}
		csvPath := filepath.Join(dir, tb.name+".csv")
		var csv bytes.Buffer
		w, err := arrowfmt.NewDelimited(&csv, schema, arrowfmt.DelimitedOptions{Header: true, NullValue: `\N`})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(csvPath, csv.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		var listElems int64
		if k := schema.FieldIndices("interests"); len(k) == 1 {
			for _, r := range recs {
				listElems += int64(r.Column(k[0]).Data().Children()[0].Len())
			}
		}
		fromCSV := fmt.Sprintf("(SELECT %s FROM read_csv(%s, header=true, nullstr='\\N', columns={%s}))",
			strings.Join(cols, ", "), sqlString(csvPath), strings.Join(types, ", "))
		for _, v := range variants {
			o := v.opts
			o.RowGroupRows = 4096
			path := filepath.Join(dir, tb.name+"-"+v.name+".parquet")
			if err := os.WriteFile(path, writeParquet(t, schema, recs, o), 0o644); err != nil {
				t.Fatal(err)
			}
			fromParquet := fmt.Sprintf("(SELECT %s FROM read_parquet(%s))", strings.Join(cols, ", "), sqlString(path))
			list := "0"
			if listElems > 0 {
				list = fmt.Sprintf("(SELECT sum(len(interests)) FROM read_parquet(%s))", sqlString(path))
			}
			queries = append(queries, fmt.Sprintf(`SELECT (SELECT count(*) FROM read_parquet(%s)) AS n,
				(SELECT count(*) FROM (SELECT * FROM %s EXCEPT ALL SELECT * FROM %s)) AS only_parquet,
				(SELECT count(*) FROM (SELECT * FROM %s EXCEPT ALL SELECT * FROM %s)) AS only_csv,
				%s AS list_elems`, sqlString(path), fromParquet, fromCSV, fromCSV, fromParquet, list))
			labels = append(labels, fmt.Sprintf("%s %s (%d list elements)", tb.name, v.name, listElems))
		}
	}
	for i, rows := range duckdb(t, queries...) {
		got := rows[0]
		want := map[string]any{"n": "20000", "only_parquet": "0", "only_csv": "0"}
		for k, v := range want {
			if fmt.Sprint(got[k]) != v {
				t.Errorf("%s: DuckDB answers %s = %v, want %v (%v)", labels[i], k, got[k], v, got)
			}
		}
		if !strings.Contains(labels[i], fmt.Sprintf("(%v list", got["list_elems"])) && !strings.HasPrefix(labels[i], "narrow") {
			t.Errorf("%s: DuckDB counts %v list elements", labels[i], got["list_elems"])
		}
	}
}
