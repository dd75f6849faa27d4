package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/outputspec"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// encodeOutput is one output of the encode comparison: our destination
// settings and DuckDB's COPY options for the same file.
type encodeOutput struct {
	name string
	dest *destinationv1.Destination
	duck string
	// polars is how Polars writes the same output (`parquet:snappy`,
	// `csv`, `ndjson`); empty where it has no equivalent (gzip).
	polars string
}

func parquetDest(c destinationv1.ParquetCodec) *destinationv1.Destination {
	return &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{Codec: c}}},
		FilenameTemplate: "{{output_name}}.parquet"}
}

var encodeOutputs = []encodeOutput{
	{"Parquet snappy", parquetDest(destinationv1.ParquetCodec_PARQUET_CODEC_SNAPPY), "(FORMAT parquet, COMPRESSION snappy)", "parquet:snappy"},
	{"Parquet zstd", parquetDest(destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD), "(FORMAT parquet, COMPRESSION zstd)", "parquet:zstd"},
	{"CSV", &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{}}},
		FilenameTemplate: "{{output_name}}.csv"}, "(FORMAT csv, HEADER)", "csv"},
	{"CSV + gzip", &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{}}},
		Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_GZIP}, FilenameTemplate: "{{output_name}}.csv.gz"}, "(FORMAT csv, HEADER, COMPRESSION gzip)", ""},
	{"NDJSON", &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}},
		FilenameTemplate: "{{output_name}}.ndjson"}, "(FORMAT json)", "ndjson"},
}

// encodeTables prints, for the 8-column customer table and the 20-column
// customer 360 table, our encode beside DuckDB's COPY of the same rows
// (DuckDB with 2 threads, to a local file; ours to a counting sink), and
// what the second core buys a single Parquet file.
func encodeTables(work string, tools string, rows int64, runs int) error {
	tables := []struct {
		name string
		c    *sampledata.Customers
	}{
		{"customers (8 columns)", sampledata.NewCustomers(nil, rows, 0, 1)},
		{"customer 360 (20 columns)", sampledata.NewCustomer360(nil, rows, 0, 1)},
	}
	fmt.Printf("\nEncode only, %d rows, median of %d runs; Sluice (pkg/fileset) to a counting sink at GOMAXPROCS %d, DuckDB COPY to a local file with threads=2\n",
		rows, runs, runtime.GOMAXPROCS(0))
	for _, tb := range tables {
		schema := tb.c.Schema()
		recs := sampledata.All(tb.c)
		// DuckDB loads the rows from a Parquet file of them (zstd).
		src := filepath.Join(work, "encode-src.parquet")
		if _, err := encodeTo(schema, recs, parquetDest(destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD), dirSink(work), "encode-src"); err != nil {
			return err
		}
		duck, err := duckCopies(tools, src, work, runs)
		if err != nil {
			return err
		}
		pol, err := polarsWrites(tools, src, work, runs)
		if err != nil {
			return err
		}
		fmt.Printf("\n%s\n\n", tb.name)
		fmt.Println("| output | Sluice | DuckDB COPY | Polars write | speed, Sluice / DuckDB | speed, Sluice / Polars | size, Sluice / DuckDB | size, Sluice / Polars |")
		fmt.Println("|---|---|---|---|---|---|---|---|")
		for _, o := range encodeOutputs {
			var ts []time.Duration
			var size int64
			for range runs {
				start := time.Now()
				n, err := encodeTo(schema, recs, o.dest, countingSink{}, "out")
				if err != nil {
					return fmt.Errorf("%s: %w", o.name, err)
				}
				ts = append(ts, time.Since(start))
				size = n
			}
			ours, d := medianOf(ts), duck[o.name]
			p, polars, vsPolars, sizePolars := pol[o.name], "-", "-", "-"
			if p.err != "" {
				polars = "cannot: " + p.err
			} else if o.polars != "" {
				polars = fmt.Sprintf("%.3f s, %.1f MB", p.time.Seconds(), float64(p.bytes)/1e6)
				vsPolars = fmt.Sprintf("%.2f x", p.time.Seconds()/ours.Seconds())
				sizePolars = fmt.Sprintf("%.2f x", float64(size)/float64(p.bytes))
			}
			fmt.Printf("| %s | %.3f s, %.1f MB | %.3f s, %.1f MB | %s | %.2f x | %s | %.2f x | %s |\n", o.name, ours.Seconds(), float64(size)/1e6,
				d.time.Seconds(), float64(d.bytes)/1e6, polars, d.time.Seconds()/ours.Seconds(), vsPolars, float64(size)/float64(d.bytes), sizePolars)
		}
		// The second core on one unsplit Parquet file.
		fmt.Println()
		fmt.Println("| one Parquet file | GOMAXPROCS 1 | GOMAXPROCS 2 | second core |")
		fmt.Println("|---|---|---|---|")
		for _, o := range encodeOutputs[:2] {
			by := map[int]time.Duration{}
			for _, procs := range []int{1, 2} {
				prev := runtime.GOMAXPROCS(procs)
				var ts []time.Duration
				for range runs {
					start := time.Now()
					if _, err := encodeTo(schema, recs, o.dest, countingSink{}, "out"); err != nil {
						runtime.GOMAXPROCS(prev)
						return err
					}
					ts = append(ts, time.Since(start))
				}
				runtime.GOMAXPROCS(prev)
				by[procs] = medianOf(ts)
			}
			fmt.Printf("| %s | %.3f s | %.3f s | %.2f x |\n", o.name, by[1].Seconds(), by[2].Seconds(), by[1].Seconds()/by[2].Seconds())
		}
		for _, r := range recs {
			r.Release()
		}
	}
	fmt.Println("\n(speed over 1.0 means Sluice is faster; size under 1.0 means Sluice's file is smaller)")
	return nil
}

// encodeTo writes recs as d says into sink and answers the bytes.
func encodeTo(schema *arrow.Schema, recs []arrow.RecordBatch, d *destinationv1.Destination, sink fileset.Sink, name string) (int64, error) {
	cfg, err := outputspec.Config(d, filename.Values{Now: time.Now(), OutputName: name})
	if err != nil {
		return 0, err
	}
	fw, err := fileset.New(schema, cfg, sink)
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		if err := fw.Write(r); err != nil {
			return 0, err
		}
	}
	files, err := fw.Close()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, f := range files {
		n += f.Bytes
	}
	return n, nil
}

func medianOf(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

type duckResult struct {
	time  time.Duration
	bytes int64
	// err is why the tool could not write the output (Polars: nested
	// columns as CSV).
	err string
}

// duckCopies loads src into DuckDB (2 threads, not timed) and times each
// output's COPY runs times, answering the median and the file's size.
func duckCopies(tools, src, work string, runs int) (map[string]duckResult, error) {
	const js = `import { DuckDBInstance } from '@duckdb/node-api';
import { readFileSync, statSync } from 'node:fs';
const { src, runs, outputs } = JSON.parse(readFileSync(0, 'utf8'));
const db = await DuckDBInstance.create(':memory:', { threads: '2' });
const c = await db.connect();
await c.run("CREATE TABLE t AS SELECT * FROM read_parquet('" + src + "')");
const res = {};
for (const o of outputs) {
  const ms = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await c.run("COPY t TO '" + o.out + "' " + o.options);
    ms.push(performance.now() - start);
  }
  res[o.name] = { ms, bytes: statSync(o.out).size };
}
console.log(JSON.stringify(res));
`
	var outs []map[string]string
	for i, o := range encodeOutputs {
		outs = append(outs, map[string]string{"name": o.name, "out": filepath.Join(work, fmt.Sprintf("duck-%d", i)), "options": o.duck})
	}
	return nodeTimes(filepath.Join(tools, "duckdb"), nil, js, map[string]any{"src": src, "runs": runs, "outputs": outs})
}

// polarsWrites loads src into a Polars DataFrame (POLARS_MAX_THREADS=2,
// not timed) and times each output Polars can write, runs times.
func polarsWrites(tools, src, work string, runs int) (map[string]duckResult, error) {
	const js = `import pl from 'nodejs-polars';
import { readFileSync, statSync } from 'node:fs';
const { src, runs, outputs } = JSON.parse(readFileSync(0, 'utf8'));
// In one chunk per column, as DuckDB's table is loaded before its COPY.
const df = pl.readParquet(src).rechunk();
const res = {};
for (const o of outputs) {
  const ms = [];
  const [kind, codec] = o.how.split(':');
  try {
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      if (kind === 'parquet') df.writeParquet(o.out, { compression: codec });
      else if (kind === 'csv') df.writeCSV(o.out);
      else df.writeJSON(o.out, { format: 'lines' });
      ms.push(performance.now() - start);
    }
    res[o.name] = { ms, bytes: statSync(o.out).size };
  } catch (e) {
    res[o.name] = { ms: [], bytes: 0, error: String(e.message || e) };
  }
}
console.log(JSON.stringify(res));
`
	var outs []map[string]string
	for i, o := range encodeOutputs {
		if o.polars != "" {
			outs = append(outs, map[string]string{"name": o.name, "out": filepath.Join(work, fmt.Sprintf("polars-%d", i)), "how": o.polars})
		}
	}
	return nodeTimes(filepath.Join(tools, "polars"), []string{"POLARS_MAX_THREADS=2"}, js, map[string]any{"src": src, "runs": runs, "outputs": outs})
}

// nodeTimes runs the script js with Node in dir (where its packages are
// installed), input as JSON on its standard input, and reads back each
// output's times and size.
func nodeTimes(dir string, env []string, js string, input any) (map[string]duckResult, error) {
	script := filepath.Join(dir, fmt.Sprintf("bench-%d.mjs", os.Getpid()))
	if err := os.WriteFile(script, []byte(js), 0o644); err != nil {
		return nil, err
	}
	defer os.Remove(script)
	in, _ := json.Marshal(input)
	cmd := exec.Command("node", script)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", filepath.Base(dir), err, stderr.String())
	}
	var res map[string]struct {
		MS    []float64
		Bytes int64
		Error string
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("%s answered %q: %v", filepath.Base(dir), out, err)
	}
	m := map[string]duckResult{}
	for name, r := range res {
		if r.Error != "" {
			m[name] = duckResult{err: r.Error}
			continue
		}
		var ds []time.Duration
		for _, ms := range r.MS {
			ds = append(ds, time.Duration(ms*float64(time.Millisecond)))
		}
		m[name] = duckResult{time: medianOf(ds), bytes: r.Bytes}
	}
	return m, nil
}
