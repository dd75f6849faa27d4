package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// partitionValues are the countries of the partitioned test rows: a
// slash, an equals sign, a percent sign, quotes, non-ASCII, a null and
// an empty string (which Hive, and so DuckDB, read back as null).
var partitionValues = []*string{ptrTo("FR"), ptrTo("a/b=c"), ptrTo("100%"), ptrTo("Zürich 東京"), nil, ptrTo(""), ptrTo(`it's "q"#`)}

func ptrTo[T any](v T) *T { return &v }

var partitionedSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "country", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
	{Name: "note", Type: arrow.BinaryTypes.String},
}, nil)

var partitionedStart = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// partitionedRows answers n rows: row i has country partitionValues[i%7]
// and a time 20 minutes after the one before, in batches of size.
func partitionedRows(t testing.TB, n, size int) []arrow.RecordBatch {
	var out []arrow.RecordBatch
	for off := 0; off < n; off += size {
		b := array.NewRecordBuilder(memory.DefaultAllocator, partitionedSchema)
		for i := off; i < min(n, off+size); i++ {
			b.Field(0).(*array.Int64Builder).Append(int64(i))
			if v := partitionValues[i%len(partitionValues)]; v == nil {
				b.Field(1).AppendNull()
			} else {
				b.Field(1).(*array.StringBuilder).Append(*v)
			}
			b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(partitionedStart.Add(time.Duration(i) * 20 * time.Minute).UnixMicro()))
			b.Field(3).(*array.StringBuilder).Append(fmt.Sprintf("row %d, with a comma", i))
		}
		rec := b.NewRecordBatch()
		b.Release()
		t.Cleanup(rec.Release)
		out = append(out, rec)
	}
	return out
}

// download writes a delivery's data objects under dir, at their keys.
func (e *delivering) download(t *testing.T, d *deliveryv1.Delivery, dir string) {
	e.downloadAs(t, d, dir, nil)
}

// downloadAs is download with each object's bytes and key changed by
// unpack (decrypted and uncompressed, say) when it is given.
func (e *delivering) downloadAs(t *testing.T, d *deliveryv1.Delivery, dir string, unpack func(key string, b []byte) (string, []byte)) {
	t.Helper()
	var wg sync.WaitGroup
	keys := make(chan string)
	for range 32 {
		wg.Go(func() {
			for k := range keys {
				key, b := k, e.get(t, k)
				if unpack != nil {
					key, b = unpack(key, b)
				}
				path := filepath.Join(dir, filepath.FromSlash(key))
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Error(err)
					continue
				}
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for _, o := range d.GetObjects() {
		if o.GetKind() == "data" {
			keys <- o.GetKey()
		}
	}
	close(keys)
	wg.Wait()
}

// Partitioned deliveries in every format land in Hive-style folders that
// DuckDB reads back with hive_partitioning: every row once, its values,
// and the partition columns rebuilt from the folder names (nulls,
// slashes, `=`, `%`, quotes and non-ASCII included; the day in the
// destination's time zone). The manifest lists each file with its
// partition values; a partition column the data lacks is refused naming
// it, before anything is written.
func TestPartitionedDeliveriesReadBackInDuckDB(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	const rows = 2000
	recs := partitionedRows(t, rows, 300)
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	partitionBy := &destinationv1.Partitioning{TimeZone: "Asia/Tokyo", Fields: []*destinationv1.PartitionField{
		{Column: "country"}, {Column: "at", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_DAY, Name: "day"}}}
	gpg := testenv.NewGnuPG(t)
	pgpKey := gpg.Key("partitions@acme.test", "default", "default")
	for _, c := range []struct {
		name   string
		format *destinationv1.FileFormat
		read   string
		// sealed files are gzipped and encrypted to pgpKey
		sealed bool
	}{
		{"parquet", &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{Codec: destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD}}}, "read_parquet('%s/**/*.parquet', hive_partitioning=true)", false},
		{"csv", csvFormat(), "read_csv('%s/**/*.csv', hive_partitioning=true, header=true)", false},
		{"tsv", &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: "\t"}}}, "read_csv('%s/**/*.tsv', hive_partitioning=true, header=true, delim='\\t')", false},
		{"psv", &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: "|"}}}, "read_csv('%s/**/*.psv', hive_partitioning=true, header=true, delim='|')", false},
		{"json", &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Json{Json: &destinationv1.JsonFormat{}}}, "read_json('%s/**/*.json', format='array', hive_partitioning=true)", false},
		{"ndjson", &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}, "read_json('%s/**/*.ndjson', format='newline_delimited', hive_partitioning=true)", false},
		{"csv-gzip-pgp", csvFormat(), "read_csv('%s/**/*.csv', hive_partitioning=true, header=true)", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			settings := &destinationv1.Destination{Format: c.format, PartitionBy: partitionBy, Manifest: true, SuccessFile: true,
				Split: &destinationv1.Split{MaxRows: 150}}
			var unpackFile func(string, []byte) (string, []byte)
			if c.sealed {
				settings.Compression = &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_GZIP}
				settings.PgpPublicKey = pgpKey
				// One decryption at a time: gpg-agent runs out of secure
				// memory under many at once (seen with 32 on a loaded machine).
				var oneAtATime sync.Mutex
				unpackFile = func(key string, b []byte) (string, []byte) {
					oneAtATime.Lock()
					defer oneAtATime.Unlock()
					return strings.TrimSuffix(key, ".gz"), unpack(t, b, destinationv1.CompressionKind_COMPRESSION_KIND_GZIP, gpg)
				}
			}
			dest := e.destination(t, c.name, settings)
			d, err := e.deliver(ctx, dest.GetName(), reader(t, recs), e.admin, &deliveryv1.DeliveryStart{OutputName: "customers"})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			e.downloadAs(t, d, dir, unpackFile)
			got := testenv.DuckDB(t, "SELECT id, note, country, CAST(day AS VARCHAR) AS day FROM "+fmt.Sprintf(c.read, dir)+" ORDER BY id")[0]
			if len(got) != rows {
				seen := map[string]bool{}
				for _, r := range got {
					seen[fmt.Sprint(r["id"])] = true
				}
				for i := range rows {
					if !seen[fmt.Sprint(i)] {
						t.Errorf("row %d is missing", i)
						break
					}
				}
				for _, o := range d.GetObjects() {
					if strings.Contains(o.GetKey(), "it") {
						t.Log(o.GetKey())
						break
					}
				}
				t.Fatalf("DuckDB reads %d rows, want %d", len(got), rows)
			}
			for i, r := range got {
				want := partitionValues[i%len(partitionValues)]
				country, _ := r["country"].(string)
				if (want == nil || *want == "") != (r["country"] == nil) || (want != nil && *want != "" && country != *want) {
					t.Fatalf("row %d: country %v, want %v", i, r["country"], want)
				}
				day := partitionedStart.Add(time.Duration(i) * 20 * time.Minute).In(tokyo).Format(time.DateOnly)
				if r["id"] != fmt.Sprint(i) && r["id"] != float64(i) || r["note"] != fmt.Sprintf("row %d, with a comma", i) || r["day"] != day {
					t.Fatalf("row %d: %v, want day %s", i, r, day)
				}
			}
			// Each data file names its partition, as its key does; the
			// manifest lists them with the values, a null as null.
			var manifest struct {
				Files []struct {
					Key       string             `json:"key"`
					Partition map[string]*string `json:"partition"`
				} `json:"files"`
			}
			data := 0
			for _, o := range d.GetObjects() {
				switch o.GetKind() {
				case "data":
					data++
					if o.GetPartition()["country"] == "" || !strings.Contains(o.GetKey(), "/day="+o.GetPartition()["day"]+"/") {
						t.Errorf("%s: partition %v", o.GetKey(), o.GetPartition())
					}
				case "manifest":
					if err := json.Unmarshal(e.get(t, o.GetKey()), &manifest); err != nil {
						t.Fatal(err)
					}
				}
			}
			nulls := 0
			for _, f := range manifest.Files {
				if f.Partition["country"] == nil {
					nulls++
					if !strings.Contains(f.Key, "/country=__HIVE_DEFAULT_PARTITION__/") {
						t.Errorf("%s: a null country outside the default partition", f.Key)
					}
				}
			}
			if len(manifest.Files) != data || nulls == 0 {
				t.Errorf("the manifest lists %d files (%d with a null country), the delivery %d", len(manifest.Files), nulls, data)
			}
		})
	}

	// A column the data lacks (names are case-sensitive): refused, naming
	// it, and nothing written.
	dest := e.destination(t, "typo", &destinationv1.Destination{Format: csvFormat(), PartitionBy: &destinationv1.Partitioning{
		Fields: []*destinationv1.PartitionField{{Column: "Country"}}}})
	_, err := e.deliver(ctx, dest.GetName(), reader(t, recs), e.admin, nil)
	if ae := apierror.FromStatus(err); ae == nil || ae.Reason != errorsv1.ErrorReason_ERROR_REASON_SCHEMA_NOT_SUPPORTED || ae.Metadata["column"] != "Country" ||
		!strings.Contains(ae.Message, "partition_by") {
		t.Errorf("a partition column the data lacks: %v", err)
	}
	if objects, _ := e.left(t, "typo/"); len(objects) != 0 {
		t.Errorf("a refused delivery wrote %v", objects)
	}
}

// 10,000 partitions with at most 16 files open and a small buffer on the
// service, rows in an order that visits every partition in every batch:
// every row lands once, in its partition's folder.
func TestTenThousandPartitionsLandEveryRowOnce(t *testing.T) {
	e := startDelivering(t, func(c *serveConfig) { c.Delivery.PartitionBuffer = 256 << 10 })
	ctx := context.Background()
	const rows, parts = 20_000, 10_000
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "k", Type: arrow.PrimitiveTypes.Int64}}, nil)
	var recs []arrow.RecordBatch
	for off := 0; off < rows; off += 4096 {
		b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
		for i := off; i < min(rows, off+4096); i++ {
			b.Field(0).(*array.Int64Builder).Append(int64(i))
			b.Field(1).(*array.Int64Builder).Append(int64(i % parts))
		}
		rec := b.NewRecordBatch()
		b.Release()
		t.Cleanup(rec.Release)
		recs = append(recs, rec)
	}
	dest := e.destination(t, "many", &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}},
		PartitionBy: &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{{Column: "k"}}, MaxOpenFiles: 16}})
	began := time.Now()
	d, err := e.deliver(ctx, dest.GetName(), reader(t, recs), e.admin, &deliveryv1.DeliveryStart{OutputName: "ids"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("delivered in %s", time.Since(began))
	dir := t.TempDir()
	e.download(t, d, dir)
	t.Logf("downloaded at %s", time.Since(began))
	got := testenv.DuckDB(t, fmt.Sprintf("SELECT count(*) AS n, count(DISTINCT id) AS ids, count(*) FILTER (WHERE id %% %d <> k) AS misplaced, count(DISTINCT k) AS parts FROM read_json('%s/**/*.ndjson', format='newline_delimited', hive_partitioning=true)", parts, dir))[0][0]
	if fmt.Sprint(got["n"]) != fmt.Sprint(rows) || fmt.Sprint(got["ids"]) != fmt.Sprint(rows) || fmt.Sprint(got["misplaced"]) != "0" || fmt.Sprint(got["parts"]) != fmt.Sprint(parts) {
		t.Errorf("read back: %v", got)
	}
	if n := int64(0); true {
		for _, o := range d.GetObjects() {
			n += o.GetRows()
		}
		if n != rows {
			t.Errorf("the delivery's objects hold %d rows, want %d", n, rows)
		}
	}
	t.Logf("%d rows in %d partitions: %d files", rows, parts, len(d.GetObjects()))
}

// A partitioned delivery to a misspelled bucket fails with its input
// kept; once the bucket is corrected, Resolve reruns it from the kept
// input and it lands the same keys and the same bytes as the same rows
// delivered straight to a correct destination: a rerun of a partitioned
// output is idempotent.
func TestPartitionedDeliveryResolvedFromKeptInput(t *testing.T) {
	w := startWorkflows(t, nil)
	ctx := context.Background()
	w.mayUseAnyBucket(t)
	settings := func(bucket string) *destinationv1.Destination {
		return &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}},
			BucketOverride: bucket, Manifest: true, PartitionBy: &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{
				{Column: "country"}, {Column: "customer_id", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET, Buckets: 5}}}}
	}
	recs := customerBatches(t, 6000, 700)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	typo := w.destination(t, "typo", settings(w.bucket+"-typo"))
	d := w.failedDelivery(t, typo.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)
	if _, err := w.dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{
		Destination: &destinationv1.Destination{Name: typo.GetName(), BucketOverride: w.bucket},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"bucket_override"}},
	}, w.admin); err != nil {
		t.Fatal(err)
	}
	resolved, err := w.resolve(ctx, w.workflow(t, d.GetWorkflow()), "fix-bucket-name")
	if err != nil || resolved.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED {
		t.Fatalf("resolving after the fix: %v %v", resolved.GetState(), err)
	}
	direct := w.destination(t, "direct", settings(""))
	straight, err := w.deliver(ctx, direct.GetName(), reader(t, recs), w.admin, &deliveryv1.DeliveryStart{OutputName: "out"})
	if err != nil {
		t.Fatal(err)
	}
	sums := func(d *deliveryv1.Delivery, prefix string) map[string]string {
		out := map[string]string{}
		for _, o := range d.GetObjects() {
			if o.GetKind() == "data" {
				w.checkObject(t, o)
				out[strings.TrimPrefix(o.GetKey(), prefix)] = o.GetChecksum()
			}
		}
		return out
	}
	a, b := sums(resolved, "typo/"), sums(straight, "direct/")
	if len(a) < 10 || len(a) != len(b) {
		t.Fatalf("the resolved delivery wrote %d files, the straight one %d", len(a), len(b))
	}
	for k, sum := range b {
		if a[k] != sum {
			t.Errorf("%s: %q after Resolve, %q straight", k, a[k], sum)
		}
	}
}
