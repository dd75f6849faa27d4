package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"google.golang.org/grpc"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// partitioned delivers the table as Parquet (zstd) into n partitions (the
// customer id's bucket, so that every batch visits every partition), beside
// DuckDB's COPY ... (PARTITION_BY) of the same rows into as many folders
// (customer_id % n, the same spread) and s5cmd uploading them: time and
// peak RSS side by side, for each n.
func (b *bench) partitioned(counts string) error {
	fmt.Printf("\nPartitioned Parquet (zstd): %d rows, the partition of each row from its customer id, so every batch visits every partition; 1 run each\n\n", b.rows)
	fmt.Println("| partitions | Sluice end to end | files | delivery service peak RSS | DuckDB COPY PARTITION_BY + s5cmd upload | files | DuckDB peak RSS during COPY | Sluice / DuckDB+s5cmd |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	pid := b.sluice.Pid("delivery")
	for _, s := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			return fmt.Errorf("--partitions: %q is not a partition count of 2 or more", s)
		}
		dest, err := b.destination(fmt.Sprintf("partitioned-%d", n), &destinationv1.Destination{
			Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{Codec: destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD}}},
			PartitionBy: &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{{Column: "customer_id",
				Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET, Buckets: int32(n)}}}})
		if err != nil {
			return err
		}
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			return fmt.Errorf("reset the peak RSS: %w", err)
		}
		rr, err := array.NewRecordReader(sampledata.Customer360Schema, b.recs)
		if err != nil {
			return err
		}
		start := time.Now()
		d, err := deliverclient.Deliver(b.ctx, deliveryv1.NewDeliveryServiceClient(b.conn),
			&deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "customers"}, rr, deliverclient.Options{CallOptions: []grpc.CallOption{b.token}})
		if err != nil {
			return fmt.Errorf("deliver into %d partitions: %w", n, err)
		}
		e2e := time.Since(start)
		peak, err := peakRSS(pid)
		if err != nil {
			return err
		}
		out := filepath.Join(b.work, fmt.Sprintf("duck-partitioned-%d", n))
		copyTime, duckPeak, err := b.duckPartitioned(out, n)
		if err != nil {
			return err
		}
		var files int
		_ = filepath.WalkDir(out, func(_ string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				files++
			}
			return err
		})
		up, err := b.s5cmdDir(out, fmt.Sprintf("duckdb/partitioned-%d/", n))
		if err != nil {
			return err
		}
		_ = os.RemoveAll(out)
		pipeline := copyTime + up
		fmt.Printf("| %d | %.2f s | %d | %.0f MiB | %.2f s + %.2f s = %.2f s | %d | %.0f MiB | %.2f x |\n",
			n, e2e.Seconds(), len(d.GetObjects()), float64(peak)/(1<<20), copyTime.Seconds(), up.Seconds(), pipeline.Seconds(), files,
			float64(duckPeak)/(1<<20), pipeline.Seconds()/e2e.Seconds())
	}
	fmt.Println("\n(Sluice / DuckDB+s5cmd: over 1.0 means Sluice is faster. DuckDB's peak is its process's during the COPY, the table already loaded; Sluice's is the delivery service's for the whole delivery.)")
	return nil
}

// destination creates a destination on the bench's credential.
func (b *bench) destination(id string, d *destinationv1.Destination) (*destinationv1.Destination, error) {
	d.Credential, d.Prefix = b.dests["ndjson"].GetCredential(), id+"/"
	out, err := destinationv1.NewDestinationServiceClient(b.destConn).CreateDestination(b.ctx, &destinationv1.CreateDestinationRequest{Parent: parent, DestinationId: id, Destination: d}, b.token)
	if err != nil {
		return nil, fmt.Errorf("create destination %s: %w", id, err)
	}
	return out, nil
}

// duckPartitioned loads the dataset into DuckDB (2 threads, not timed)
// and times COPY ... (PARTITION_BY) of it into out, answering DuckDB's
// peak RSS during the COPY.
func (b *bench) duckPartitioned(out string, n int) (time.Duration, int64, error) {
	dir := filepath.Join(b.tools, "duckdb")
	script := filepath.Join(dir, fmt.Sprintf("bench-part-%d.mjs", os.Getpid()))
	src := `import { DuckDBInstance } from '@duckdb/node-api';
import { readFileSync, writeFileSync } from 'node:fs';
const [parquet, out, n] = process.argv.slice(2);
const db = await DuckDBInstance.create(':memory:', { threads: '2' });
const c = await db.connect();
await c.run("CREATE TABLE t AS SELECT * FROM read_parquet('" + parquet + "')");
writeFileSync('/proc/self/clear_refs', '5');
const start = performance.now();
await c.run("COPY (SELECT *, customer_id % " + n + " AS part FROM t) TO '" + out + "' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (part))");
const ms = performance.now() - start;
const hwm = readFileSync('/proc/self/status', 'utf8').split('\n').find(l => l.startsWith('VmHWM:')).split(/\s+/)[1];
console.log(JSON.stringify({ ms, kb: Number(hwm) }));
`
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		return 0, 0, err
	}
	defer os.Remove(script)
	_ = os.RemoveAll(out)
	cmd := exec.Command("node", script, b.parquet, out, strconv.Itoa(n))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("duckdb: %v\n%s", err, stderr.String())
	}
	var r struct{ MS, KB float64 }
	if err := json.Unmarshal(res, &r); err != nil {
		return 0, 0, fmt.Errorf("duckdb answered %q: %v", res, err)
	}
	return time.Duration(r.MS * float64(time.Millisecond)), int64(r.KB) << 10, nil
}

// s5cmdDir uploads a directory tree under prefix, its paths kept.
func (b *bench) s5cmdDir(dir, prefix string) (time.Duration, error) {
	return b.s5cmd([]string{dir + "/*"}, prefix)
}
