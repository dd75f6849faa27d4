package arrowfmt_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/arrowfmt"
)

// Issue 10, item 5: floats are written in plain decimal notation with the
// shortest digits that read back exactly for magnitudes in [1e-6, 1e21),
// and in exponent form outside, in CSV and JSON alike; Python's float()
// and json module (a reader that is not ours) read every one back exactly.
func TestFloatsInPlainNotation(t *testing.T) {
	cases := []struct {
		v    float64
		want string
	}{
		{1234567.0, "1234567"}, {0.00001, "0.00001"}, {-0.5, "-0.5"}, {0, "0"}, {1e-6, "0.000001"},
		{123456789012345678901.0, "123456789012345680000"}, {1e21, "1e+21"}, {1e-7, "1e-07"},
		{-2.5e-300, "-2.5e-300"}, {math.MaxFloat64, "1.7976931348623157e+308"}, {math.Nextafter(0.3, 1), "0.30000000000000004"},
	}
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Float64}}, nil)
	b := array.NewFloat64Builder(memory.DefaultAllocator)
	for _, c := range cases {
		b.Append(c.v)
	}
	col := b.NewArray()
	b.Release()
	rec := array.NewRecordBatch(schema, []arrow.Array{col}, int64(col.Len()))
	col.Release()
	defer rec.Release()

	var text, js bytes.Buffer
	dw, _ := arrowfmt.NewDelimited(&text, schema, arrowfmt.DelimitedOptions{})
	jw, _ := arrowfmt.NewJSON(&js, schema, arrowfmt.JSONOptions{Lines: true})
	writeAll(t, rec, dw, jw)
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	objs := strings.Split(strings.TrimSpace(js.String()), "\n")
	for i, c := range cases {
		if lines[i] != c.want {
			t.Errorf("CSV: %v written as %s, want %s", c.v, lines[i], c.want)
		}
		if objs[i] != `{"v":`+c.want+`}` {
			t.Errorf("NDJSON: %v written as %s", c.v, objs[i])
		}
		if got, err := strconv.ParseFloat(lines[i], 64); err != nil || got != c.v {
			t.Errorf("%s reads back as %v, %v", lines[i], got, err)
		}
	}
	// Python reads the CSV with float() and the NDJSON with json.loads and
	// answers repr(), which is the shortest exact form of each value.
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to read the output with an outside reader: apt-get install python3")
	}
	script := `import json, sys
csv_part, js_part = sys.stdin.read().split("\n--\n")
out = []
for line, obj in zip(csv_part.split(), js_part.split()):
    a, b = float(line), float(json.loads(obj)["v"])  # integral values read as int, exactly
    assert a == b, (line, obj)
    out.append(repr(a))
print("\n".join(out))`
	cmd := exec.Command(python, "-c", script)
	cmd.Stdin = strings.NewReader(text.String() + "\n--\n" + js.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	for i, r := range strings.Fields(string(out)) {
		var back float64
		if err := json.Unmarshal([]byte(r), &back); err != nil {
			t.Fatalf("python answered %q", r)
		}
		if back != cases[i].v {
			t.Errorf("python read %s as %s, not %v", lines[i], r, cases[i].v)
		}
	}
}

// batchWriterCloser is what every format writer is.
type batchWriterCloser interface {
	Write(arrow.RecordBatch) error
	Close() error
}

// writeAll writes rec with each writer and closes it.
func writeAll(t *testing.T, rec arrow.RecordBatch, ws ...batchWriterCloser) {
	t.Helper()
	for _, w := range ws {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// Negative zero goes into JSON as -0.0: "-0" reads as the integer 0 in
// Python's json and DuckDB (#22). Read back, it is still negative zero.
func TestJSONNegativeZero(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Float64}, {Name: "f", Type: arrow.PrimitiveTypes.Float32}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.Float64Builder).AppendValues([]float64{math.Copysign(0, -1), 0, -1.5}, nil)
	b.Field(1).(*array.Float32Builder).AppendValues([]float32{float32(math.Copysign(0, -1)), 0, 2}, nil)
	rec := b.NewRecordBatch()
	defer rec.Release()
	var out bytes.Buffer
	w, err := arrowfmt.NewJSON(&out, schema, arrowfmt.JSONOptions{Lines: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if lines[0] != `{"v":-0.0,"f":-0.0}` || lines[1] != `{"v":0,"f":0}` {
		t.Fatalf("negative and positive zero written as %q and %q", lines[0], lines[1])
	}
	var row struct{ V, F float64 }
	if err := json.Unmarshal([]byte(lines[0]), &row); err != nil || !math.Signbit(row.V) || row.V != 0 || !math.Signbit(row.F) {
		t.Fatalf("read back %+v, %v", row, err)
	}
}
