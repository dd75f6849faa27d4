package arrowfmt_test

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the writers' output")

// TestGolden pins the exact bytes of every text format and option set for
// a fixed batch of every type. After a deliberate change, regenerate with
// `go test ./pkg/arrowfmt -run TestGolden -update` and read the diff.
func TestGolden(t *testing.T) {
	cols := allColumns()
	schema := schemaOf(cols)
	rec := randomBatch(memory.DefaultAllocator, cols, 40, rand.New(rand.NewPCG(2026, 11)))
	defer rec.Release()
	cases := []struct {
		file string
		make func(*bytes.Buffer) (batchWriter, error)
	}{
		{"csv_default.golden", func(b *bytes.Buffer) (batchWriter, error) {
			return arrowfmt.NewDelimited(b, schema, arrowfmt.DelimitedOptions{Header: true})
		}},
		{"tsv_all_crlf_rownumber.golden", func(b *bytes.Buffer) (batchWriter, error) {
			return arrowfmt.NewDelimited(b, schema, arrowfmt.DelimitedOptions{Delimiter: '\t', Header: true, Quote: arrowfmt.QuoteAll, CRLF: true, RowNumber: "row_number"})
		}},
		{"psv_nonnumeric_null.golden", func(b *bytes.Buffer) (batchWriter, error) {
			return arrowfmt.NewDelimited(b, schema, arrowfmt.DelimitedOptions{Delimiter: '|', Header: true, Quote: arrowfmt.QuoteNonNumeric, NullValue: "NULL"})
		}},
		{"custom_none_escape.golden", func(b *bytes.Buffer) (batchWriter, error) {
			return arrowfmt.NewDelimited(b, schema, arrowfmt.DelimitedOptions{Delimiter: '^', Quote: arrowfmt.QuoteNone, Escape: '\\', NullValue: `\N`})
		}},
		{"json.golden", func(b *bytes.Buffer) (batchWriter, error) {
			return arrowfmt.NewJSON(b, schema, arrowfmt.JSONOptions{})
		}},
		{"ndjson_crlf.golden", func(b *bytes.Buffer) (batchWriter, error) {
			return arrowfmt.NewJSON(b, schema, arrowfmt.JSONOptions{Lines: true, CRLF: true})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			var out bytes.Buffer
			w, err := tc.make(&out)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (generate with -update)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("%s differs from the golden file; if the change is deliberate, rerun with -update and review the diff", tc.file)
			}
		})
	}
}
