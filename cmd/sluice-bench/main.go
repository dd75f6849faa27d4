// Command sluice-bench measures deliveries end to end: the delivery,
// destination and credential services run as their own processes on a
// local MinIO, and the customer 360 table is delivered through Deliver in
// several formats, beside the encode alone, s5cmd uploading the same file,
// and the pipeline a user would otherwise run (DuckDB's COPY to a file,
// then s5cmd). It also reports the delivery service's peak RSS for
// deliveries of growing size. `make bench` runs it; it prints figures and
// judges nothing.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

const parent = "tenants/bench/environments/production"

// loadTests is what the load test runs; onlyLoad skips the rest.
var (
	loadTests   loadOptions
	onlyLoad    bool
	onlyProfile bool
)

func main() {
	rows := flag.Int64("rows", 1_000_000, "rows of the customer 360 table per delivery")
	runs := flag.Int("runs", 3, "runs of each measurement; the median is printed")
	rssGiB := flag.String("rss-gib", "1,8", "sizes in GiB of Arrow input for the peak RSS deliveries (empty to skip)")
	encodeRuns := flag.Int("encode-runs", 5, "runs of each encode in the comparison with DuckDB; the median is printed")
	encodeOnly := flag.Bool("encode-only", false, "print only the encode comparison with DuckDB")
	partitions := flag.String("partitions", "10,1000,10000", "partition counts of the partitioned deliveries (empty to skip)")
	partitionedOnly := flag.Bool("partitioned-only", false, "print only the partitioned deliveries beside DuckDB")
	memLimit := flag.String("delivery-memory-limit", "512MiB", "GOMEMLIMIT of the delivery service (the deploy manifests set one; empty for none)")
	loadStores := flag.String("load-stores", "sqlite,postgres", "delivery stores the load test runs on (empty to skip it)")
	loadOnly := flag.Bool("load-only", false, "run only the load test")
	profileOnly := flag.Bool("profile-only", false, "print only where one delivery's time goes, by stage, per output")
	flag.StringVar(&profileDir, "profile-dir", "", "keep the CPU profiles of the per-stage table in this directory, for go tool pprof")
	heavy := flag.Int("load-heavy", 28, "deliveries the heavy tenant of the load test sends at once (0: only the small deliveries)")
	deliveryMB := flag.Int("load-delivery-mb", 50, "MB of Arrow in each of the load test's large deliveries")
	small := flag.Int("load-small", 1000, "small deliveries the load test sends 16 at a time")
	loadFlags := flag.String("load-delivery-flags", "", "more flags for the load test's delivery service, space-separated (e.g. \"--max-running 2 --max-tenant-running 1\")")
	flag.BoolVar(&s3TLS, "s3-tls", true, "serve MinIO over HTTPS, as S3 is served (false: plain HTTP, where every part is also hashed for SigV4)")
	flag.Parse()
	if *loadOnly {
		*encodeOnly, *partitions, *rssGiB = false, "", ""
	}
	lo := loadOptions{heavy: *heavy, deliveryMB: *deliveryMB, small: *small, smallAlone: 200, smallRows: 1000, memLimit: *memLimit, parallelism: 16}
	lo.deliveryFlags = strings.Fields(*loadFlags)
	if *loadStores != "" {
		lo.stores = strings.Split(*loadStores, ",")
	}
	loadTests = lo
	onlyLoad = *loadOnly
	onlyProfile = *profileOnly
	if onlyProfile {
		*encodeOnly, *partitions, *rssGiB = false, "", ""
	}
	if err := run(*rows, *runs, *rssGiB, *encodeRuns, *encodeOnly, *partitions, *partitionedOnly, *memLimit); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	ctx    context.Context
	work   string
	minio  *localserver.MinIO
	bucket string
	tools  string
	sluice *localserver.Sluice
	addrs  map[string]string
	token  grpc.CallOption
	conn   *grpc.ClientConn
	// destConn reaches the destination service, for destinations made
	// along the way.
	destConn *grpc.ClientConn
	dests    map[string]*destinationv1.Destination
	// metricsAddr serves the delivery service's metrics and profiles.
	metricsAddr string
	recs        []arrow.RecordBatch
	rows        int64
	runs        int
	parquet     string // the dataset as a Parquet file, for DuckDB to load
}

func run(rows int64, runs int, rssGiB string, encodeRuns int, encodeOnly bool, partitions string, partitionedOnly bool, memLimit string) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{ctx: ctx, work: work, tools: localserver.ToolsDir(), rows: rows, runs: runs, dests: map[string]*destinationv1.Destination{}}
	needs := []string{"s5cmd", "duckdb/node_modules/@duckdb/node-api"}
	if !partitionedOnly {
		needs = append(needs, "polars/node_modules/nodejs-polars")
	}
	for _, tool := range needs {
		if _, err := os.Stat(filepath.Join(b.tools, tool)); err != nil {
			return fmt.Errorf("%s is missing from %s: run `make bench`, which installs the pinned tools first", tool, b.tools)
		}
	}
	fmt.Printf("sluice-bench: GOMAXPROCS %s, %d CPUs\n", orDefault(os.Getenv("GOMAXPROCS"), "unset"), numCPU())
	if !partitionedOnly && !onlyLoad && !onlyProfile {
		if err := encodeTables(work, b.tools, rows, encodeRuns); err != nil {
			return err
		}
	}
	if encodeOnly {
		return nil
	}
	if onlyLoad {
		b.recs = sampledata.All(sampledata.NewCustomer360(nil, rows, 0, 1))
		return b.load(loadTests)
	}
	fmt.Printf("\nDeliveries: %d rows of the customer 360 table (%d columns), %d runs each, median\n",
		rows, len(sampledata.Customer360Schema.Fields()), runs)
	if b.minio, err = startMinIO(); err != nil {
		return err
	}
	defer b.minio.Stop()
	if b.bucket, err = b.minio.CreateBucket(ctx, "bench"); err != nil {
		return err
	}
	// The services run as their own processes, so that the delivery
	// service's memory is its own.
	port, err := freeLocalPort()
	if err != nil {
		return err
	}
	b.metricsAddr = fmt.Sprintf("127.0.0.1:%d", port)
	opts := localserver.SluiceOptions{MinIO: b.minio, Delivery: []string{"--metrics-addr", b.metricsAddr, "--pprof"}}
	if memLimit != "" {
		opts.DeliveryEnv = []string{"GOMEMLIMIT=" + memLimit}
		fmt.Printf("The delivery service runs with GOMEMLIMIT=%s.\n", memLimit)
	}
	if b.sluice, err = localserver.StartSluice(opts); err != nil {
		return err
	}
	defer b.sluice.Stop()
	b.addrs = b.sluice.Addrs
	if err := b.setup(); err != nil {
		return err
	}
	b.recs = sampledata.All(sampledata.NewCustomer360(nil, rows, 0, 1))
	if err := b.writeParquetCopy(); err != nil {
		return err
	}
	if onlyProfile {
		return b.stageProfiles()
	}
	if partitions != "" {
		if err := b.partitioned(partitions); err != nil {
			return err
		}
	}
	if partitionedOnly {
		return nil
	}
	if err := b.formats(); err != nil {
		return err
	}
	if err := b.stageProfiles(); err != nil {
		return err
	}
	if err := b.stagingOverhead(); err != nil {
		return err
	}
	if rssGiB != "" {
		if err := b.rss(rssGiB); err != nil {
			return err
		}
	}
	if len(loadTests.stores) > 0 {
		return b.load(loadTests)
	}
	return nil
}

// s3TLS serves the benchmark's MinIO over HTTPS.
var s3TLS bool

// startMinIO starts the benchmark's MinIO, over HTTPS unless --s3-tls=false:
// S3 is served over HTTPS, where the SDK sends parts that carry their
// CRC32C without hashing them for SigV4, and TLS costs its own CPU.
func startMinIO() (*localserver.MinIO, error) {
	m, err := localserver.StartMinIOWith(localserver.MinIOOptions{TLS: s3TLS})
	if err == nil {
		fmt.Printf("MinIO serves %s.\n", m.Endpoint)
	}
	return m, err
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func numCPU() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

// setup makes the token, the credential and one destination per format.
func (b *bench) setup() error {
	key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(filepath.Join(b.sluice.Dir, "data")))
	if err != nil {
		return err
	}
	tok, err := auth.NewSigner(key).Mint("bench@sluice.test", "bench", []string{auth.PolicyAdministrator}, 6*time.Hour)
	if err != nil {
		return err
	}
	b.token = grpc.PerRPCCredentials(auth.BearerCredentials(tok))
	credConn, err := grpc.NewClient(b.addrs["credential"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer credConn.Close()
	cred, err := credentialv1.NewCredentialServiceClient(credConn).CreateCredential(b.ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "minio",
		Credential: &credentialv1.Credential{Bucket: b.bucket, Region: b.minio.Region,
			Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: b.minio.RootUser, SecretAccessKey: b.minio.RootPassword}}}}, b.token)
	if err != nil {
		return fmt.Errorf("create credential: %w", err)
	}
	if b.destConn, err = grpc.NewClient(b.addrs["destination"], grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	dests := destinationv1.NewDestinationServiceClient(b.destConn)
	for id, d := range map[string]*destinationv1.Destination{
		"parquet-snappy": {Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}}},
		"csv-gzip": {Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{}}},
			Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_GZIP}, FilenameTemplate: "{{output_name}}.csv.gz"},
		"ndjson": {Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}, FilenameTemplate: "{{output_name}}.ndjson"},
	} {
		d.Credential, d.Prefix = cred.GetName(), id+"/"
		out, err := dests.CreateDestination(b.ctx, &destinationv1.CreateDestinationRequest{Parent: parent, DestinationId: id, Destination: d}, b.token)
		if err != nil {
			return fmt.Errorf("create destination %s: %w", id, err)
		}
		b.dests[id] = out
	}
	b.conn, err = grpc.NewClient(b.addrs["delivery"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	return err
}

// writeParquetCopy writes the dataset once as Parquet, for DuckDB to load.
func (b *bench) writeParquetCopy() error {
	b.parquet = filepath.Join(b.work, "customers.parquet")
	d := &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{Codec: destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD}}},
		FilenameTemplate: "customers.parquet"}
	_, err := b.encode(d, dirSink(b.work))
	return err
}

// encode writes the dataset as d says into sink and answers the bytes.
func (b *bench) encode(d *destinationv1.Destination, sink fileset.Sink) (int64, error) {
	return encodeTo(sampledata.Customer360Schema, b.recs, d, sink, "customers")
}

type result struct {
	e2e, encode, s5cmd, duck, duckUp time.Duration
	outBytes, duckBytes              int64
}

// formats measures each format and prints the table.
func (b *bench) formats() error {
	fmt.Println()
	fmt.Println("| output | Sluice Deliver end to end | encode only (counting sink) | end to end / encode | s5cmd upload of our file | DuckDB COPY + s5cmd upload | Sluice / DuckDB+s5cmd |")
	fmt.Println("|---|---|---|---|---|---|---|")
	duck := map[string]string{
		"parquet-snappy": "(FORMAT parquet, COMPRESSION snappy)",
		"csv-gzip":       "(FORMAT csv, HEADER, COMPRESSION gzip)",
		"ndjson":         "(FORMAT json)",
	}
	ext := map[string]string{"parquet-snappy": "parquet", "csv-gzip": "csv.gz", "ndjson": "ndjson"}
	ids := []string{"parquet-snappy", "csv-gzip", "ndjson"}
	runs := map[string][]result{}
	for _, id := range ids {
		var rs []result
		for i := range b.runs {
			var r result
			// End to end through Deliver.
			start := time.Now()
			rr, err := array.NewRecordReader(sampledata.Customer360Schema, b.recs)
			if err != nil {
				return err
			}
			d, err := deliverclient.Deliver(b.ctx, deliveryv1.NewDeliveryServiceClient(b.conn),
				&deliveryv1.DeliveryStart{Destination: b.dests[id].GetName(), OutputName: fmt.Sprintf("run%d", i)}, rr,
				deliverclient.Options{CallOptions: []grpc.CallOption{b.token}})
			if err != nil {
				return fmt.Errorf("deliver %s: %w", id, err)
			}
			r.e2e = time.Since(start)
			r.outBytes = d.GetProgress().GetBytesOut()
			// The encode alone.
			start = time.Now()
			if _, err := b.encode(b.dests[id], countingSink{}); err != nil {
				return err
			}
			r.encode = time.Since(start)
			// s5cmd uploading the same file, written locally first.
			dir := filepath.Join(b.work, "ours")
			_ = os.RemoveAll(dir)
			if _, err := b.encode(b.dests[id], dirSink(dir)); err != nil {
				return err
			}
			var files []string
			_ = filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					files = append(files, path)
				}
				return err
			})
			if r.s5cmd, err = b.s5cmd(files, fmt.Sprintf("s5cmd/%s/run%d/", id, i)); err != nil {
				return err
			}
			// DuckDB COPY to a file, then s5cmd.
			out := filepath.Join(b.work, "duck."+ext[id])
			if r.duck, err = b.duckCopy(out, duck[id]); err != nil {
				return err
			}
			if st, err := os.Stat(out); err == nil {
				r.duckBytes = st.Size()
			}
			if r.duckUp, err = b.s5cmd([]string{out}, fmt.Sprintf("duckdb/%s/run%d/", id, i)); err != nil {
				return err
			}
			rs = append(rs, r)
		}
		runs[id] = rs
		m := median(rs)
		secs := m.e2e.Seconds()
		pipeline := m.duck + m.duckUp
		fmt.Printf("| %s | %.2f s, %.0f rows/s, %.1f MB/s, %.1f MB | %.2f s | %.2f x | %.2f s | %.2f s + %.2f s = %.2f s, %.1f MB | %.2f x |\n",
			id, secs, float64(b.rows)/secs, float64(m.outBytes)/1e6/secs, float64(m.outBytes)/1e6,
			m.encode.Seconds(), m.encode.Seconds()/secs, m.s5cmd.Seconds(),
			m.duck.Seconds(), m.duckUp.Seconds(), pipeline.Seconds(), float64(m.duckBytes)/1e6, pipeline.Seconds()/secs)
	}
	fmt.Println("\n(end to end / encode: how much of the encode's speed survives upload, 1.0 = upload fully hidden; Sluice / DuckDB+s5cmd: over 1.0 means Sluice is faster)")
	// Each run's pair, measured minutes apart at most: on a shared machine
	// the spread says how far one median can be trusted.
	fmt.Println()
	fmt.Println("| output | Sluice end to end, each run | DuckDB COPY + s5cmd, each run | Sluice / DuckDB+s5cmd, each run |")
	fmt.Println("|---|---|---|---|")
	for _, id := range ids {
		var ours, theirs, ratio []string
		for _, r := range runs[id] {
			pipeline := r.duck + r.duckUp
			ours = append(ours, fmt.Sprintf("%.2f", r.e2e.Seconds()))
			theirs = append(theirs, fmt.Sprintf("%.2f", pipeline.Seconds()))
			ratio = append(ratio, fmt.Sprintf("%.2f", pipeline.Seconds()/r.e2e.Seconds()))
		}
		fmt.Printf("| %s | %s s | %s s | %s x |\n", id, strings.Join(ours, ", "), strings.Join(theirs, ", "), strings.Join(ratio, ", "))
	}
	return nil
}

func median(rs []result) result {
	pick := func(get func(result) time.Duration) time.Duration {
		ds := make([]time.Duration, len(rs))
		for i, r := range rs {
			ds[i] = get(r)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	m := rs[len(rs)/2]
	m.e2e = pick(func(r result) time.Duration { return r.e2e })
	m.encode = pick(func(r result) time.Duration { return r.encode })
	m.s5cmd = pick(func(r result) time.Duration { return r.s5cmd })
	m.duck = pick(func(r result) time.Duration { return r.duck })
	m.duckUp = pick(func(r result) time.Duration { return r.duckUp })
	return m
}

// s5cmd uploads files under prefix and answers how long it took.
func (b *bench) s5cmd(files []string, prefix string) (time.Duration, error) {
	args := []string{"--endpoint-url", b.minio.Endpoint, "cp"}
	args = append(args, files...)
	args = append(args, "s3://"+b.bucket+"/"+prefix)
	cmd := exec.Command(filepath.Join(b.tools, "s5cmd"), args...)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+b.minio.RootUser, "AWS_SECRET_ACCESS_KEY="+b.minio.RootPassword, "AWS_REGION="+b.minio.Region)
	if b.minio.CAFile != "" {
		cmd.Env = append(cmd.Env, "AWS_CA_BUNDLE="+b.minio.CAFile) // s5cmd takes it as every AWS SDK does
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("s5cmd: %v\n%s", err, stderr.String())
	}
	return time.Since(start), nil
}

// duckCopy loads the dataset into DuckDB (2 threads, not timed) and times
// COPY of it to out.
func (b *bench) duckCopy(out, options string) (time.Duration, error) {
	dir := filepath.Join(b.tools, "duckdb")
	script := filepath.Join(dir, fmt.Sprintf("bench-%d.mjs", os.Getpid()))
	src := `import { DuckDBInstance } from '@duckdb/node-api';
const [parquet, out, options] = process.argv.slice(2);
const db = await DuckDBInstance.create(':memory:', { threads: '2' });
const c = await db.connect();
await c.run("CREATE TABLE t AS SELECT * FROM read_parquet('" + parquet + "')");
const start = performance.now();
await c.run("COPY t TO '" + out + "' " + options);
console.log(JSON.stringify({ ms: performance.now() - start }));
`
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		return 0, err
	}
	defer os.Remove(script)
	_ = os.Remove(out)
	cmd := exec.Command("node", script, b.parquet, out, options)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("duckdb: %v\n%s", err, stderr.String())
	}
	var r struct{ MS float64 }
	if err := json.Unmarshal(res, &r); err != nil {
		return 0, fmt.Errorf("duckdb answered %q: %v", res, err)
	}
	return time.Duration(r.MS * float64(time.Millisecond)), nil
}

// rss delivers growing Arrow inputs as NDJSON and as Parquet (whose
// writer holds row groups) and prints the delivery service's peak resident
// memory for each, reset before each delivery.
func (b *bench) rss(sizes string) error {
	fmt.Println()
	fmt.Println("| output | Arrow input | rows | seconds | output MB | delivery service peak RSS |")
	fmt.Println("|---|---|---|---|---|---|")
	pid := b.sluice.Pid("delivery")
	var one bytes.Buffer
	w := ipc.NewWriter(&one, ipc.WithSchema(sampledata.Customer360Schema))
	if err := w.Write(b.recs[0]); err != nil {
		return err
	}
	_ = w.Close()
	perRow := float64(one.Len()) / float64(b.recs[0].NumRows())
	for _, s := range strings.Split(sizes, ",") {
		gib, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("--rss-gib: %w", err)
		}
		rows := int64(gib * (1 << 30) / perRow)
		for _, id := range []string{"ndjson", "parquet-snappy"} {
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
				return fmt.Errorf("reset the peak RSS: %w", err)
			}
			start := time.Now()
			d, err := deliverclient.Deliver(b.ctx, deliveryv1.NewDeliveryServiceClient(b.conn),
				&deliveryv1.DeliveryStart{Destination: b.dests[id].GetName(), OutputName: fmt.Sprintf("rss-%sgib", strings.TrimSpace(s))},
				&cycle{recs: b.recs, rows: rows}, deliverclient.Options{CallOptions: []grpc.CallOption{b.token}})
			if err != nil {
				return fmt.Errorf("deliver %s GiB as %s: %w", s, id, err)
			}
			peak, err := peakRSS(pid)
			if err != nil {
				return err
			}
			fmt.Printf("| %s | %.2f GiB | %d | %.1f | %.0f | %.1f MiB |\n", id, float64(d.GetProgress().GetBytesIn())/(1<<30), d.GetProgress().GetRows(),
				time.Since(start).Seconds(), float64(d.GetProgress().GetBytesOut())/1e6, float64(peak)/(1<<20))
		}
	}
	return nil
}

func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// cycle yields the same batches again and again until rows rows.
type cycle struct {
	recs []arrow.RecordBatch
	rows int64
	sent int64
	i    int
	cur  arrow.RecordBatch
	// sliced is the cut last batch, released on the next call.
	sliced arrow.RecordBatch
}

func (c *cycle) Schema() *arrow.Schema { return sampledata.Customer360Schema }
func (c *cycle) Retain()               {}
func (c *cycle) Release()              {}
func (c *cycle) Err() error            { return nil }

func (c *cycle) Next() bool {
	if c.sliced != nil {
		c.sliced.Release()
		c.sliced = nil
	}
	if c.sent >= c.rows {
		return false
	}
	c.cur = c.recs[c.i%len(c.recs)]
	if left := c.rows - c.sent; c.cur.NumRows() > left {
		// The last batch is cut to the rows asked for.
		c.sliced = c.cur.NewSlice(0, left)
		c.cur = c.sliced
	}
	c.i++
	c.sent += c.cur.NumRows()
	return true
}

func (c *cycle) RecordBatch() arrow.RecordBatch { return c.cur }

// Record answers the current batch.
//
// Deprecated: use RecordBatch.
func (c *cycle) Record() arrow.RecordBatch { return c.cur }

// countingSink drops what it is given, counting nothing it does not need:
// fileset counts the bytes.
type countingSink struct{}

func (countingSink) Create(string) (fileset.Object, error) { return discard{}, nil }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }
func (discard) Abort() error                { return nil }

// dirSink writes files under a directory.
type dirSink string

func (d dirSink) Create(key string) (fileset.Object, error) {
	path := filepath.Join(string(d), filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return fileObject{f}, nil
}

type fileObject struct{ *os.File }

func (f fileObject) Abort() error {
	f.File.Close()
	return os.Remove(f.Name())
}

// stagingOverhead delivers with staging on and off (the delivery service
// restarted with --staging=false) and prints what staging costs.
func (b *bench) stagingOverhead() error {
	fmt.Println()
	fmt.Println("| output | end to end, staging on | staging off | staging overhead |")
	fmt.Println("|---|---|---|---|")
	measure := func(id string) (time.Duration, error) {
		var ds []time.Duration
		for i := range b.runs {
			rr, err := array.NewRecordReader(sampledata.Customer360Schema, b.recs)
			if err != nil {
				return 0, err
			}
			start := time.Now()
			if _, err := deliverclient.Deliver(b.ctx, deliveryv1.NewDeliveryServiceClient(b.conn),
				&deliveryv1.DeliveryStart{Destination: b.dests[id].GetName(), OutputName: fmt.Sprintf("staging-%d-%d", i, time.Now().UnixNano())}, rr,
				deliverclient.Options{CallOptions: []grpc.CallOption{b.token}}); err != nil {
				return 0, err
			}
			ds = append(ds, time.Since(start))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2], nil
	}
	ids := []string{"csv-gzip", "ndjson"}
	on := map[string]time.Duration{}
	for _, id := range ids {
		d, err := measure(id)
		if err != nil {
			return err
		}
		on[id] = d
	}
	if err := b.sluice.Restart("delivery", "--staging=false"); err != nil {
		return err
	}
	defer func() { _ = b.sluice.Restart("delivery") }()
	for _, id := range ids {
		off, err := measure(id)
		if err != nil {
			return err
		}
		fmt.Printf("| %s | %.2f s | %.2f s | %+.1f %% |\n", id, on[id].Seconds(), off.Seconds(), 100*(on[id].Seconds()-off.Seconds())/off.Seconds())
	}
	return nil
}
