package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/connectiontest"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/multipart"
	"github.com/sluicehq/sluice/pkg/outputspec"
	"github.com/sluicehq/sluice/pkg/sampledata"
	"github.com/sluicehq/sluice/pkg/testenv"
	"github.com/sluicehq/sluice/services/delivery/store"
)

// delivering is `sluice serve` on MinIO with a credential on one bucket.
type delivering struct {
	r      *running
	m      *testenv.MinIO
	bucket string
	admin  grpc.CallOption
	cred   string
	// key and secret are the MinIO user the credential holds.
	key, secret string
	dests       destinationv1.DestinationServiceClient
	delivs      deliveryv1.DeliveryServiceClient
}

const production = "tenants/acme/environments/production"

func startDelivering(t testing.TB, adjust func(*serveConfig)) *delivering {
	t.Helper()
	return startDeliveringOn(t, testenv.SharedMinIO(t), adjust)
}

// startDeliveringOn is startDelivering on a MinIO of the test's own.
func startDeliveringOn(t testing.TB, m *testenv.MinIO, adjust func(*serveConfig)) *delivering {
	t.Helper()
	bucket := testenv.NewBucket(t, m)
	r := startServeWith(t, func(c *serveConfig) {
		c.useMinIO(m)
		if adjust != nil {
			adjust(c)
		}
	})
	ctx := context.Background()
	key, secret := "SLUICEDELIVER"+strings.ToUpper(bucket[len(bucket)-6:]), "sluice-deliver-secret-"+bucket
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, bucket, bucket)
	if err := testenv.SetMinIOUser(ctx, m, key, secret, policy); err != nil {
		t.Fatal(err)
	}
	e := &delivering{r: r, m: m, bucket: bucket, admin: r.token("acme", auth.PolicyAdministrator), key: key, secret: secret,
		dests: destinationv1.NewDestinationServiceClient(r.conns["destination"]), delivs: deliveryv1.NewDeliveryServiceClient(r.conns["delivery"])}
	e.cred = e.credential(t, production)
	return e
}

// credential creates a credential on the bucket in a tenant environment.
func (e *delivering) credential(t testing.TB, parent string) string {
	t.Helper()
	cred, err := credentialv1.NewCredentialServiceClient(e.r.conns["credential"]).CreateCredential(context.Background(), &credentialv1.CreateCredentialRequest{
		Parent: parent, CredentialId: "minio",
		Credential: &credentialv1.Credential{Bucket: e.bucket, Region: e.m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: e.key, SecretAccessKey: e.secret}}},
	}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	return cred.GetName()
}

// destination creates a destination writing under its own prefix.
func (e *delivering) destination(t testing.TB, id string, d *destinationv1.Destination) *destinationv1.Destination {
	t.Helper()
	d.Credential = e.cred
	if d.Prefix == "" {
		d.Prefix = id + "/"
	}
	out, err := e.dests.CreateDestination(context.Background(), &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: id, Destination: d}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *delivering) deliver(ctx context.Context, dest string, rr array.RecordReader, as grpc.CallOption, start *deliveryv1.DeliveryStart) (*deliveryv1.Delivery, error) {
	if start == nil {
		start = &deliveryv1.DeliveryStart{}
	}
	start.Destination = dest
	return deliverclient.Deliver(ctx, e.delivs, start, rr, deliverclient.Options{CallOptions: []grpc.CallOption{as}})
}

func (e *delivering) get(t *testing.T, key string) []byte {
	t.Helper()
	out, err := e.m.S3("", "").GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitListed waits, up to 10 s, for filter to list one delivery, for
// which ok holds, and answers it.
func (e *delivering) waitListed(t *testing.T, filter string, ok func(*deliveryv1.Delivery) bool) *deliveryv1.Delivery {
	t.Helper()
	for range 100 {
		list, err := e.delivs.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: filter}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetDeliveries()) == 1 && ok(list.GetDeliveries()[0]) {
			return list.GetDeliveries()[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no delivery listed by %q came to the point the test waits for", filter)
	return nil
}

// namedIn answers the delivery an error's ErrorInfo names.
func (e *delivering) namedIn(t *testing.T, err error) *deliveryv1.Delivery {
	t.Helper()
	name := apierror.FromStatus(err).Metadata["delivery"]
	if name == "" {
		t.Fatalf("the error names no delivery: %v", err)
	}
	d, err := e.delivs.GetDelivery(context.Background(), &deliveryv1.GetDeliveryRequest{Name: name}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// left answers the objects and the multipart uploads under prefix.
func (e *delivering) left(t *testing.T, prefix string) (objects []string, uploads int) {
	t.Helper()
	ctx := context.Background()
	s3c := e.m.S3("", "")
	list, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(e.bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range list.Contents {
		objects = append(objects, aws.ToString(o.Key))
	}
	return objects, len(uploadsUnder(t, s3c, e.bucket, prefix))
}

// uploadsUnder answers the multipart uploads of bucket under prefix, by
// id. It lists the whole bucket and filters: MinIO lists uploads by an
// exact key only, so a prefix would find none and prove nothing.
func uploadsUnder(t *testing.T, c *s3.Client, bucket, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)}
	for {
		page, err := c.ListMultipartUploads(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Uploads {
			if strings.HasPrefix(aws.ToString(u.Key), prefix) {
				out[aws.ToString(u.UploadId)] = aws.ToString(u.Key)
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return out
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

// checkObject checks an object against the answer: its bytes hash to the
// answered SHA-256, and S3's own CRC32C equals the answered one.
func (e *delivering) checkObject(t *testing.T, obj *deliveryv1.DeliveredObject) []byte {
	t.Helper()
	b := e.get(t, obj.GetKey())
	sum := sha256.Sum256(b)
	if want := "sha256:" + hex.EncodeToString(sum[:]); obj.GetChecksum() != want || int64(len(b)) != obj.GetBytes() {
		t.Errorf("%s: answered %s and %d bytes, the object has %s and %d", obj.GetKey(), obj.GetChecksum(), obj.GetBytes(), want, len(b))
	}
	head, err := e.m.S3("", "").HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(obj.GetKey()), ChecksumMode: s3types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(head.ChecksumCRC32C); got != obj.GetCrc32C() {
		t.Errorf("%s: S3 has CRC32C %q, the answer says %q", obj.GetKey(), got, obj.GetCrc32C())
	}
	return b
}

// sent is what a test delivered: the batches, to compare with.
func customerBatches(t testing.TB, rows int64, batchRows int) []arrow.RecordBatch {
	recs := sampledata.All(sampledata.NewCustomer360(nil, rows, batchRows, 11))
	t.Cleanup(func() {
		for _, r := range recs {
			r.Release()
		}
	})
	return recs
}

func reader(t *testing.T, recs []arrow.RecordBatch) array.RecordReader {
	rr, err := array.NewRecordReader(recs[0].Schema(), recs)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// column answers the text of column name in every row sent.
func column(recs []arrow.RecordBatch, name string) []string {
	var out []string
	for _, r := range recs {
		col := r.Column(r.Schema().FieldIndices(name)[0])
		for i := range col.Len() {
			out = append(out, col.ValueStr(i))
		}
	}
	return out
}

// unpack undoes PGP and compression and answers the file inside.
func unpack(t *testing.T, b []byte, kind destinationv1.CompressionKind, gpg *testenv.GnuPG) []byte {
	t.Helper()
	if gpg != nil {
		b = gpg.Decrypt(b)
	}
	gunzip := func(b []byte) []byte {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	untar := func(b []byte) []byte {
		tr := tar.NewReader(bytes.NewReader(b))
		if _, err := tr.Next(); err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	switch kind {
	case destinationv1.CompressionKind_COMPRESSION_KIND_GZIP:
		return gunzip(b)
	case destinationv1.CompressionKind_COMPRESSION_KIND_TAR:
		return untar(b)
	case destinationv1.CompressionKind_COMPRESSION_KIND_TGZ:
		return untar(gunzip(b))
	case destinationv1.CompressionKind_COMPRESSION_KIND_ZIP:
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		f, err := zr.File[0].Open()
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return b
}

// readBack answers the id, email and first_name of every row of a file,
// read with a reader of its format.
func readBack(t *testing.T, b []byte, format *destinationv1.FileFormat) (ids, emails, names []string) {
	t.Helper()
	switch f := format.GetKind().(type) {
	case *destinationv1.FileFormat_Parquet:
		pf, err := file.NewParquetReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Release()
		cols := map[string]*[]string{"customer_id": &ids, "email": &emails, "first_name": &names}
		for i := range int(tbl.NumCols()) {
			dst, ok := cols[tbl.Schema().Field(i).Name]
			if !ok {
				continue
			}
			for _, chunk := range tbl.Column(i).Data().Chunks() {
				for j := range chunk.Len() {
					*dst = append(*dst, chunk.ValueStr(j))
				}
			}
		}
	case *destinationv1.FileFormat_Delimited:
		r := csv.NewReader(bytes.NewReader(b))
		if d := f.Delimited.GetDelimiter(); d != "" {
			r.Comma = []rune(d)[0]
		}
		rows, err := r.ReadAll()
		if err != nil {
			t.Fatalf("parse the delimited file: %v", err)
		}
		for _, row := range rows[1:] { // after the header
			ids, emails, names = append(ids, row[0]), append(emails, row[1]), append(names, row[2])
		}
	case *destinationv1.FileFormat_Json, *destinationv1.FileFormat_Ndjson:
		var objs []map[string]any
		if _, ok := f.(*destinationv1.FileFormat_Json); ok {
			if err := json.Unmarshal(b, &objs); err != nil {
				t.Fatalf("parse JSON: %v", err)
			}
		} else {
			dec := json.NewDecoder(bytes.NewReader(b))
			for dec.More() {
				var o map[string]any
				if err := dec.Decode(&o); err != nil {
					t.Fatalf("parse NDJSON: %v", err)
				}
				objs = append(objs, o)
			}
		}
		for _, o := range objs {
			ids, emails, names = append(ids, fmt.Sprint(o["customer_id"])), append(emails, fmt.Sprint(o["email"])), append(names, fmt.Sprint(o["first_name"]))
		}
	}
	return ids, emails, names
}

// Every format, compression and PGP setting delivered through Deliver into
// MinIO and read back from it with a reader of the format: the rows and
// values sent, S3's CRC32C equal to the answer's, split files in order,
// the manifest and success file last, nothing left half done.
func TestDeliverEveryFormatToMinIO(t *testing.T) {
	e := startDelivering(t, nil)
	gpg := testenv.NewGnuPG(t)
	pgpKey := gpg.Key("deliveries@acme.test", "default", "default")
	recs := customerBatches(t, 3000, 700)
	wantIDs, wantEmails, wantNames := column(recs, "customer_id"), column(recs, "email"), column(recs, "first_name")

	delimited := func(d string) *destinationv1.FileFormat {
		return &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: d}}}
	}
	formats := map[string]*destinationv1.FileFormat{
		"parquet-snappy": {Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}},
		"parquet-zstd":   {Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{Codec: destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD}}},
		"csv":            delimited(","), "tsv": delimited("\t"), "psv": delimited("|"), "semicolon": delimited(";"),
		"json":   {Kind: &destinationv1.FileFormat_Json{Json: &destinationv1.JsonFormat{}}},
		"ndjson": {Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}},
	}
	compressions := []destinationv1.CompressionKind{
		destinationv1.CompressionKind_COMPRESSION_KIND_NONE, destinationv1.CompressionKind_COMPRESSION_KIND_GZIP,
		destinationv1.CompressionKind_COMPRESSION_KIND_ZIP, destinationv1.CompressionKind_COMPRESSION_KIND_TAR,
		destinationv1.CompressionKind_COMPRESSION_KIND_TGZ,
	}
	n := 0
	for fname, format := range formats {
		for _, comp := range compressions {
			if strings.HasPrefix(fname, "parquet") && comp != destinationv1.CompressionKind_COMPRESSION_KIND_NONE {
				continue // Parquet compresses inside the file
			}
			for _, pgp := range []bool{false, true} {
				n++
				name := fmt.Sprintf("%s-%s-pgp-%v", fname, strings.ToLower(strings.TrimPrefix(comp.String(), "COMPRESSION_KIND_")), pgp)
				t.Run(name, func(t *testing.T) {
					d := &destinationv1.Destination{Format: format, Compression: &destinationv1.Compression{Kind: comp},
						Split: &destinationv1.Split{MaxRows: 1200}, SuccessFile: true, Manifest: n%2 == 0}
					if strings.HasPrefix(fname, "parquet") {
						d.Split = nil // a folder of part files, cut by row groups below
					}
					var dec *testenv.GnuPG
					if pgp {
						d.PgpPublicKey, dec = pgpKey, gpg
					}
					dest := e.destination(t, fmt.Sprintf("d%02d", n), d)
					got, err := e.deliver(context.Background(), dest.GetName(), reader(t, recs), e.admin, &deliveryv1.DeliveryStart{OutputName: "customers"})
					if err != nil {
						t.Fatal(err)
					}
					if got.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || got.GetProgress().GetRows() != 3000 {
						t.Fatalf("delivery %v with progress %v", got.GetState(), got.GetProgress())
					}
					var ids, emails, names []string
					var kinds []string
					for _, obj := range got.GetObjects() {
						kinds = append(kinds, obj.GetKind())
						b := e.checkObject(t, obj)
						switch obj.GetKind() {
						case "data":
							i, em, nm := readBack(t, unpack(t, b, comp, dec), format)
							if int64(len(i)) != obj.GetRows() {
								t.Errorf("%s: read %d rows, the answer says %d", obj.GetKey(), len(i), obj.GetRows())
							}
							ids, emails, names = append(ids, i...), append(emails, em...), append(names, nm...)
						case "manifest":
							var m struct {
								Rows  int64 `json:"rows"`
								Files []struct {
									Key    string `json:"key"`
									CRC32C string `json:"crc32c"`
								} `json:"files"`
							}
							if err := json.Unmarshal(b, &m); err != nil || m.Rows != 3000 || len(m.Files) == 0 || m.Files[0].CRC32C != got.GetObjects()[0].GetCrc32C() {
								t.Errorf("manifest %s: %v", b, err)
							}
						case "success":
							if len(b) != 0 {
								t.Errorf("the success file holds %d bytes", len(b))
							}
						}
					}
					wantKinds := []string{"data", "data", "data", "success"}
					if strings.HasPrefix(fname, "parquet") {
						wantKinds = []string{"data", "success"}
					}
					if d.GetManifest() {
						wantKinds = append(wantKinds[:len(wantKinds)-1], "manifest", "success")
					}
					if strings.Join(kinds, ",") != strings.Join(wantKinds, ",") {
						t.Errorf("objects %v, want %v", kinds, wantKinds)
					}
					if strings.Join(ids, ",") != strings.Join(wantIDs, ",") || strings.Join(emails, ",") != strings.Join(wantEmails, ",") || strings.Join(names, ",") != strings.Join(wantNames, ",") {
						t.Errorf("values read back differ from those sent (%d ids read, %d sent)", len(ids), len(wantIDs))
					}
					if objs, ups := e.left(t, d.GetPrefix()); len(objs) != len(got.GetObjects()) || ups != 0 {
						t.Errorf("the prefix holds %d objects (answered %d) and %d multipart uploads", len(objs), len(got.GetObjects()), ups)
					}
				})
			}
		}
	}
}

func csvFormat() *destinationv1.FileFormat {
	return &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{}}}
}

// ipcBytes answers recs as one Arrow IPC stream.
func ipcBytes(t testing.TB, schema *arrow.Schema, recs ...arrow.RecordBatch) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// schemaEnd answers where a stream's schema message ends.
func schemaEnd(stream []byte) int {
	return 8 + int(binary.LittleEndian.Uint32(stream[4:8]))
}

// Bad input answers InvalidArgument saying what and where (or gRPC's own
// ResourceExhausted for a message over the limit), is stored as a failed
// delivery, and leaves no object and no multipart upload, even when files
// had landed before the fault.
func TestDeliverRefusesBadInputLeavingNothing(t *testing.T) {
	e := startDelivering(t, nil)
	recs := customerBatches(t, 4000, 500)
	good := ipcBytes(t, sampledata.Customer360Schema, recs...)
	other := arrow.NewSchema([]arrow.Field{{Name: "customer_id", Type: arrow.BinaryTypes.String}}, nil)
	ob := array.NewRecordBuilder(memory.DefaultAllocator, other)
	ob.Field(0).(*array.StringBuilder).AppendValues([]string{"not", "a", "number"}, nil)
	orec := ob.NewRecordBatch()
	defer orec.Release()
	otherStream := ipcBytes(t, other, orec)
	union := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "either",
		Type: arrow.SparseUnionOf([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int32}}, []arrow.UnionTypeCode{0})}}, nil)
	unionStream := ipcBytes(t, union)

	cases := []struct {
		name     string
		in       []byte
		code     codes.Code
		reason   string
		contains string
	}{
		{"garbage", []byte("id,email\n1,a@example.com\n"), codes.InvalidArgument, "INVALID_ARROW_STREAM", "at byte 0"},
		{"truncated", good[:len(good)-3000], codes.InvalidArgument, "INVALID_ARROW_STREAM", "ends inside a message"},
		{"no end marker", good[:len(good)-8], codes.InvalidArgument, "INVALID_ARROW_STREAM", "end-of-stream marker"},
		{"a batch contradicting the schema", append(append([]byte{}, good[:schemaEnd(good)]...), otherStream[schemaEnd(otherStream):]...),
			codes.InvalidArgument, "INVALID_ARROW_STREAM", "record batch 1"},
		{"a schema CSV cannot carry", unionStream, codes.InvalidArgument, "SCHEMA_NOT_SUPPORTED", "either"},
		{"a message over 64 MiB", bytes.Repeat([]byte{0}, 65<<20), codes.ResourceExhausted, "", ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Split every 1000 rows: files land before the fault.
			dest := e.destination(t, fmt.Sprintf("bad-%d", i), &destinationv1.Destination{Format: csvFormat(), Split: &destinationv1.Split{MaxRows: 1000}})
			opts := deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}}
			if len(c.in) > 64<<20 {
				opts.MessageBytes = len(c.in)
			}
			_, err := deliverclient.DeliverStream(context.Background(), e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName()}, bytes.NewReader(c.in), opts)
			if status.Code(err) != c.code {
				t.Fatalf("got %v, want %v", err, c.code)
			}
			if c.reason != "" {
				if got := apierror.ReasonName(apierror.FromStatus(err).Reason); got != c.reason || !strings.Contains(status.Convert(err).Message(), c.contains) {
					t.Errorf("got reason %s and %q, want %s saying %q", got, status.Convert(err).Message(), c.reason, c.contains)
				}
				if v := apierror.FromStatus(err).Fields(); v["arrow_ipc"] == "" {
					t.Errorf("no field violation on arrow_ipc: %v", v)
				}
			}
			if objs, ups := e.left(t, dest.GetPrefix()); len(objs) != 0 || ups != 0 {
				t.Errorf("left %v and %d multipart uploads", objs, ups)
			}
		})
	}
	// Each refusal after the start is a failed delivery, with its reason.
	list, err := e.delivs.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: "state = FAILED"}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, d := range list.GetDeliveries() {
		reasons[d.GetError().GetReason()]++
	}
	if reasons["INVALID_ARROW_STREAM"] != 4 || reasons["SCHEMA_NOT_SUPPORTED"] != 1 {
		t.Errorf("failed deliveries by reason: %v", reasons)
	}
}

// A caller who may not use the destination is refused before any byte:
// nothing is stored or written.
func TestDeliverRefusesCallersWhoMayNotUseTheDestination(t *testing.T) {
	e := startDelivering(t, nil)
	recs := customerBatches(t, 100, 100)
	adminOnly := e.destination(t, "admin-only", &destinationv1.Destination{Format: csvFormat(), Access: &destinationv1.Access{AdminOnly: true}})
	pii := e.destination(t, "pii", &destinationv1.Destination{Format: csvFormat()})
	for _, c := range []struct {
		name string
		dest *destinationv1.Destination
		as   grpc.CallOption
		code codes.Code
	}{
		// Exactly as a destination that does not exist (#22).
		{"a user without policies to an admin only destination", adminOnly, e.r.token("acme"), codes.NotFound},
		{"a restricted user to a destination without limited PII access", pii, e.r.token("acme", auth.PolicyRestrictPII), codes.NotFound},
		{"another tenant", pii, e.r.token("globex", auth.PolicyAdministrator), codes.NotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.deliver(context.Background(), c.dest.GetName(), reader(t, recs), c.as, nil)
			if status.Code(err) != c.code {
				t.Fatalf("got %v, want %v", err, c.code)
			}
			if objs, ups := e.left(t, c.dest.GetPrefix()); len(objs) != 0 || ups != 0 {
				t.Errorf("left %v and %d multipart uploads", objs, ups)
			}
		})
	}
	list, err := e.delivs.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{Parent: production}, e.admin)
	if err != nil || len(list.GetDeliveries()) != 0 {
		t.Fatalf("deliveries stored for refused callers: %v %v", list.GetDeliveries(), err)
	}
}

// The same idempotency key twice, one after the other and at once: one
// set of objects, the same answer.
func TestDeliverIdempotencyKey(t *testing.T) {
	e := startDelivering(t, nil)
	recs := customerBatches(t, 2000, 500)
	dest := e.destination(t, "idem", &destinationv1.Destination{Format: csvFormat(), SuccessFile: true})
	start := func(key string) *deliveryv1.DeliveryStart {
		return &deliveryv1.DeliveryStart{IdempotencyKey: key, OutputName: "out-" + key}
	}
	first, err := e.deliver(context.Background(), dest.GetName(), reader(t, recs), e.admin, start("once"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.deliver(context.Background(), dest.GetName(), reader(t, recs), e.admin, start("once"))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetName() != first.GetName() || len(again.GetObjects()) != len(first.GetObjects()) {
		t.Fatalf("second answer %s with %d objects, first %s with %d", again.GetName(), len(again.GetObjects()), first.GetName(), len(first.GetObjects()))
	}
	// At once: both answers name one delivery.
	var (
		wg      sync.WaitGroup
		answers [2]*deliveryv1.Delivery
		errs    [2]error
	)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = e.deliver(context.Background(), dest.GetName(), reader(t, recs), e.admin, start("twice"))
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if answers[0].GetName() != answers[1].GetName() || answers[0].GetObjects()[0].GetChecksum() != answers[1].GetObjects()[0].GetChecksum() {
		t.Fatalf("concurrent answers differ: %s and %s", answers[0].GetName(), answers[1].GetName())
	}
	objs, ups := e.left(t, dest.GetPrefix())
	if len(objs) != 4 || ups != 0 { // two outputs, each a file and its success file
		t.Fatalf("the prefix holds %v and %d uploads, want two outputs once", objs, ups)
	}
	// The key belongs to one destination: another destination delivers.
	other := e.destination(t, "idem-2", &destinationv1.Destination{Format: csvFormat()})
	third, err := e.deliver(context.Background(), other.GetName(), reader(t, recs), e.admin, start("once"))
	if err != nil || third.GetName() == first.GetName() {
		t.Fatalf("same key, other destination: %v, %v", third.GetName(), err)
	}
}

// blockingReader yields its batches, stopping after the first until
// release is closed, so a test can look at a delivery while it runs.
type blockingReader struct {
	array.RecordReader
	n       int
	release chan struct{}
}

func (b *blockingReader) Next() bool {
	if b.n++; b.n == 2 {
		<-b.release
	}
	return b.RecordReader.Next()
}

// GetDelivery shows a running delivery's live counters, ListDeliveries
// filters, and a caller sees only deliveries to destinations they may use.
func TestDeliverGetAndListDeliveries(t *testing.T) {
	e := startDelivering(t, nil)
	recs := customerBatches(t, 3000, 1000)
	open := e.destination(t, "open", &destinationv1.Destination{Format: csvFormat()})
	adminOnly := e.destination(t, "admin-only", &destinationv1.Destination{Format: csvFormat(), Access: &destinationv1.Access{AdminOnly: true}})
	ctx := context.Background()

	br := &blockingReader{RecordReader: reader(t, recs), release: make(chan struct{})}
	done := make(chan *deliveryv1.Delivery, 1)
	go func() {
		// Small messages, so that the first batch is sent before the pause.
		d, err := deliverclient.Deliver(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: open.GetName()}, br,
			deliverclient.Options{MessageBytes: 16 << 10, CallOptions: []grpc.CallOption{e.admin}})
		if err != nil {
			t.Error(err)
		}
		done <- d
	}()
	running := e.waitListed(t, "state = RECEIVING", func(d *deliveryv1.Delivery) bool { return d.GetProgress().GetBytesIn() > 0 })
	got, err := e.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: running.GetName()}, e.admin)
	if err != nil || got.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING {
		t.Fatalf("running delivery: %v %v", got, err)
	}
	close(br.release)
	first := <-done
	if first.GetProgress().GetRows() != 3000 || first.GetEndTime() == nil {
		t.Fatalf("finished delivery: %v", first)
	}
	second, err := e.deliver(ctx, adminOnly.GetName(), reader(t, recs), e.admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := func(as grpc.CallOption, filter string) []string {
		list, err := e.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: filter}, as)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range list.GetDeliveries() {
			out = append(out, d.GetName())
		}
		return out
	}
	if got := names(e.admin, ""); strings.Join(got, ",") != second.GetName()+","+first.GetName() {
		t.Errorf("admin lists %v, want newest first [%s %s]", got, second.GetName(), first.GetName())
	}
	if got := names(e.admin, `destination = "`+open.GetName()+`" AND state = SUCCEEDED`); strings.Join(got, ",") != first.GetName() {
		t.Errorf("filtered list %v, want [%s]", got, first.GetName())
	}
	user := e.r.token("acme")
	if got := names(user, ""); strings.Join(got, ",") != first.GetName() {
		t.Errorf("a user without policies lists %v, want only %s", got, first.GetName())
	}
	if _, err := e.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: second.GetName()}, user); status.Code(err) != codes.NotFound {
		t.Errorf("a user without policies gets the admin only delivery: %v", err)
	}
	if _, err := e.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: "state = LOST"}, e.admin); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown state in the filter: %v", err)
	}
}

// A sandbox destination promotes without force once a delivery succeeded
// on it, as the delivery records it.
func TestDeliverEnablesPromotion(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	dest, err := e.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: "tenants/acme/environments/sandbox", DestinationId: "trial",
		Destination: &destinationv1.Destination{Credential: e.credential(t, "tenants/acme/environments/sandbox"), Format: csvFormat(), Prefix: "trial/"}}, e.admin)
	if err != nil {
		t.Fatalf("%v %v", err, apierror.FromStatus(err).Fields())
	}
	promote := &destinationv1.PromoteDestinationRequest{Name: dest.GetName(), TargetEnvironment: "production"}
	if _, err := e.dests.PromoteDestination(ctx, promote, e.admin); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("promotion before any delivery: %v", err)
	}
	if _, err := e.deliver(ctx, dest.GetName(), reader(t, customerBatches(t, 10, 10)), e.admin, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dests.PromoteDestination(ctx, promote, e.admin); err != nil {
		t.Fatalf("promotion after a delivery: %v", err)
	}
}

// memObject keeps one file in memory, to compute locally what a delivery
// should have written.
type memFiles map[string]*bytes.Buffer

func (m memFiles) Create(key string) (fileset.Object, error) {
	m[key] = &bytes.Buffer{}
	return memFile{m[key]}, nil
}

type memFile struct{ *bytes.Buffer }

func (memFile) Close() error { return nil }
func (memFile) Abort() error { return nil }

// A delivery of many parts lands as one object whose bytes equal the
// output computed locally, in the parts the answer names.
func TestDeliverManyPartsLandAsOneObject(t *testing.T) {
	e := startDelivering(t, func(c *serveConfig) { c.Delivery.PartSize, c.Delivery.PartBuffers = multipart.MinPartSize, 3 })
	recs := customerBatches(t, 120_000, 8192)
	dest := e.destination(t, "big", &destinationv1.Destination{Format: csvFormat()})
	got, err := e.deliver(context.Background(), dest.GetName(), reader(t, recs), e.admin, &deliveryv1.DeliveryStart{OutputName: "big"})
	if err != nil {
		t.Fatal(err)
	}
	obj := got.GetObjects()[0]
	cfg, err := outputspec.Config(dest, filename.Values{Now: got.GetCreateTime().AsTime(), OutputName: "big"})
	if err != nil {
		t.Fatal(err)
	}
	local := memFiles{}
	fw, err := fileset.New(recs[0].Schema(), cfg, local)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := fw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fw.Close(); err != nil {
		t.Fatal(err)
	}
	want := local[obj.GetKey()].Bytes()
	if obj.GetParts() < 3 || int64(len(want)) != obj.GetBytes() {
		t.Fatalf("answer: %d parts, %d bytes; computed %d bytes", obj.GetParts(), obj.GetBytes(), len(want))
	}
	if b := e.checkObject(t, obj); !bytes.Equal(b, want) {
		t.Fatal("the object's bytes differ from the output computed locally")
	}
	attrs, err := e.m.S3("", "").GetObjectAttributes(context.Background(), &s3.GetObjectAttributesInput{Bucket: aws.String(e.bucket), Key: aws.String(obj.GetKey()),
		ObjectAttributes: []s3types.ObjectAttributes{s3types.ObjectAttributesObjectParts, s3types.ObjectAttributesChecksum}})
	if err != nil {
		t.Fatal(err)
	}
	if n := aws.ToInt32(attrs.ObjectParts.TotalPartsCount); int64(n) != obj.GetParts() {
		t.Errorf("S3 holds %d parts, the answer says %d", n, obj.GetParts())
	}
}

// An Arrow Flight client's DoPut, the DeliveryStart as the descriptor's
// command, lands the same objects as Deliver, answers the Delivery in the
// PutResult, and is held to the same access rules.
func TestDeliverThroughFlightDoPut(t *testing.T) {
	e := startDelivering(t, nil)
	recs := customerBatches(t, 5000, 1000)
	ctx := context.Background()
	viaDeliver := e.destination(t, "via-deliver", &destinationv1.Destination{Format: csvFormat(), Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_GZIP}, Split: &destinationv1.Split{MaxRows: 2000}})
	viaFlight := e.destination(t, "via-flight", &destinationv1.Destination{Format: csvFormat(), Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_GZIP}, Split: &destinationv1.Split{MaxRows: 2000}})
	want, err := e.deliver(ctx, viaDeliver.GetName(), reader(t, recs), e.admin, &deliveryv1.DeliveryStart{OutputName: "out"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := flight.NewClientWithMiddleware(e.r.addrs["delivery"], nil, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	doPut := func(as grpc.CallOption, dest string) (*deliveryv1.Delivery, error) {
		return deliverclient.DeliverFlight(ctx, client, &deliveryv1.DeliveryStart{Destination: dest, OutputName: "out"}, reader(t, recs),
			deliverclient.Options{CallOptions: []grpc.CallOption{as}})
	}
	got, err := doPut(e.admin, viaFlight.GetName())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetObjects()) != len(want.GetObjects()) || got.GetProgress().GetRows() != 5000 {
		t.Fatalf("Flight landed %d objects and %d rows, Deliver %d objects", len(got.GetObjects()), got.GetProgress().GetRows(), len(want.GetObjects()))
	}
	// The gzip headers carry each delivery's own start time: compare what
	// they hold.
	gz := destinationv1.CompressionKind_COMPRESSION_KIND_GZIP
	for i, obj := range got.GetObjects() {
		mine, theirs := e.checkObject(t, obj), e.checkObject(t, want.GetObjects()[i])
		if strings.TrimPrefix(obj.GetKey(), viaFlight.GetPrefix()) != strings.TrimPrefix(want.GetObjects()[i].GetKey(), viaDeliver.GetPrefix()) ||
			!bytes.Equal(unpack(t, mine, gz, nil), unpack(t, theirs, gz, nil)) {
			t.Errorf("object %d: Flight wrote %s, Deliver %s, with different contents", i, obj.GetKey(), want.GetObjects()[i].GetKey())
		}
	}
	adminOnly := e.destination(t, "flight-admin-only", &destinationv1.Destination{Format: csvFormat(), Access: &destinationv1.Access{AdminOnly: true}})
	if _, err := doPut(e.r.token("acme"), adminOnly.GetName()); status.Code(err) != codes.NotFound {
		t.Errorf("a user without policies through Flight: %v, want NotFound, as a destination that does not exist", err)
	}
	if _, err := doPut(grpc.EmptyCallOption{}, viaFlight.GetName()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token through Flight: %v, want Unauthenticated", err)
	}
	if objs, ups := e.left(t, adminOnly.GetPrefix()); len(objs) != 0 || ups != 0 {
		t.Errorf("refused Flight calls left %v and %d uploads", objs, ups)
	}
	// Flight's other methods are not served.
	lf, err := client.ListFlights(ctx, &flight.Criteria{}, e.admin)
	if err == nil {
		_, err = lf.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("ListFlights: %v, want PermissionDenied", err)
	}
}

// A caller whose stream breaks midway resumes it from the offset the
// service reports: the delivery runs again over the held bytes and the
// rest, and lands exactly what an uninterrupted delivery lands. Wrong
// offsets are refused with the right one, and the staged copy is gone
// once the delivery succeeds.
func TestDeliverResumesAnInterruptedStream(t *testing.T) {
	for _, store := range []string{"dir", "s3"} {
		t.Run("staging on "+store, func(t *testing.T) { resumeAnInterruptedStream(t, store) })
	}
}

// withStagingOn stages in a second bucket of the shared MinIO, written as
// the platform identity (MinIO's root here), when store is s3.
func withStagingOn(t *testing.T, store string) (adjust func(*serveConfig), stagingBucket string) {
	if store != "s3" {
		return nil, ""
	}
	m := testenv.SharedMinIO(t)
	stagingBucket = testenv.NewBucket(t, m)
	return func(c *serveConfig) {
		c.Delivery.StagingURL = "s3://" + stagingBucket + "/staging"
		c.Credential.AWS.PlatformCredentials = aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: m.RootUser, SecretAccessKey: m.RootPassword}, nil
		}))
	}, stagingBucket
}

func resumeAnInterruptedStream(t *testing.T, store string) {
	adjust, stagingBucket := withStagingOn(t, store)
	e := startDelivering(t, adjust)
	recs := customerBatches(t, 6000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	settings := func() *destinationv1.Destination {
		return &destinationv1.Destination{Format: csvFormat(), Split: &destinationv1.Split{MaxRows: 2500}, SuccessFile: true}
	}
	whole := e.destination(t, "whole", settings())
	broken := e.destination(t, "broken", settings())
	ctx := context.Background()
	want, err := deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: whole.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	if err != nil {
		t.Fatal(err)
	}

	// Send the first 40% in small messages, then cut the caller off.
	start := &deliveryv1.DeliveryStart{Destination: broken.GetName(), OutputName: "out", IdempotencyKey: "nightly-42"}
	cctx, cancel := context.WithCancel(ctx)
	call, err := e.delivs.Deliver(cctx, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	cut := len(stream) * 2 / 5
	for off := 0; off < cut; off += 32 << 10 {
		if err := call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: stream[off:min(cut, off+32<<10)]}}); err != nil {
			t.Fatal(err)
		}
	}
	var held *deliveryv1.Delivery
	for range 100 { // until the service has staged what was sent
		list, err := e.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: `destination = "` + broken.GetName() + `"`}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetDeliveries()) == 1 && list.GetDeliveries()[0].GetProgress().GetBytesIn() == int64(cut) {
			held = list.GetDeliveries()[0]
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if held == nil {
		t.Fatal("the service never showed the bytes it received")
	}
	cancel()
	var interrupted *deliveryv1.Delivery
	for range 100 {
		got, err := e.delivs.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Name: held.GetName()}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		if got.GetStagedInput().GetState() == deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED {
			interrupted = got
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if interrupted == nil || interrupted.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING ||
		interrupted.GetStagedInput().GetBytes() != int64(cut) || interrupted.GetStagedInput().GetExpireTime() == nil {
		t.Fatalf("after the cut: %v", interrupted)
	}
	if objs, ups := e.left(t, broken.GetPrefix()); len(objs) != 0 || ups != 0 {
		t.Fatalf("an interrupted delivery shows %v and %d uploads", objs, ups)
	}

	resume := func(offset int) (*deliveryv1.Delivery, error) {
		s := proto.Clone(start).(*deliveryv1.DeliveryStart)
		s.ResumeOffset = int64(offset)
		return deliverclient.DeliverStream(ctx, e.delivs, s, bytes.NewReader(stream[offset:]), deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	}
	for _, wrong := range []int{0, cut - 1, cut + 1} {
		_, err := resume(wrong)
		if status.Code(err) != codes.FailedPrecondition || apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_RESUME_OFFSET_MISMATCH || apierror.FromStatus(err).Metadata["resume_offset"] != fmt.Sprint(cut) {
			t.Fatalf("resume at %d: %v (metadata %v), want RESUME_OFFSET_MISMATCH naming %d", wrong, err, apierror.FromStatus(err).Metadata, cut)
		}
	}
	got, err := resume(cut)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetName() != interrupted.GetName() || got.GetProgress().GetRows() != 6000 ||
		got.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED {
		t.Fatalf("resumed delivery: %v", got)
	}
	if len(got.GetObjects()) != len(want.GetObjects()) {
		t.Fatalf("resumed: %d objects, uninterrupted: %d", len(got.GetObjects()), len(want.GetObjects()))
	}
	for i, obj := range got.GetObjects() {
		e.checkObject(t, obj)
		if strings.TrimPrefix(obj.GetKey(), broken.GetPrefix()) != strings.TrimPrefix(want.GetObjects()[i].GetKey(), whole.GetPrefix()) || obj.GetChecksum() != want.GetObjects()[i].GetChecksum() {
			t.Errorf("object %d: resumed %s %s, uninterrupted %s %s", i, obj.GetKey(), obj.GetChecksum(), want.GetObjects()[i].GetKey(), want.GetObjects()[i].GetChecksum())
		}
	}
	if objs, ups := e.left(t, broken.GetPrefix()); len(objs) != len(want.GetObjects()) || ups != 0 {
		t.Errorf("the prefix holds %v and %d uploads", objs, ups)
	}
	if files, _ := filepath.Glob(filepath.Join(e.r.dataDir, "staging", "*.stage")); len(files) != 0 {
		t.Errorf("staged input left after success: %v", files)
	}
	if stagingBucket != "" {
		list, err := e.m.S3("", "").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(stagingBucket)})
		if err != nil || len(list.Contents) != 0 {
			t.Errorf("staged segments left in %s after success: %d (%v)", stagingBucket, len(list.Contents), err)
		}
	}
	// Done: the key answers the delivery, and there is nothing to resume.
	if again, err := resume(0); err != nil || again.GetName() != got.GetName() {
		t.Errorf("the key after success: %v %v", again.GetName(), err)
	}
	if _, err := resume(cut); apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_NOTHING_TO_RESUME {
		t.Errorf("resuming a finished delivery: %v", err)
	}
}

// Past the staging cap, a delivery is refused with RESOURCE_EXHAUSTED and
// nothing is kept or written.
func TestDeliverStagingCap(t *testing.T) {
	e := startDelivering(t, func(c *serveConfig) { c.Delivery.StagingMaxBytes = 64 << 10 })
	dest := e.destination(t, "capped", &destinationv1.Destination{Format: csvFormat()})
	_, err := e.deliver(context.Background(), dest.GetName(), reader(t, customerBatches(t, 5000, 1000)), e.admin, nil)
	if status.Code(err) != codes.ResourceExhausted || apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_STAGING_FULL {
		t.Fatalf("got %v, want RESOURCE_EXHAUSTED STAGING_FULL", err)
	}
	if objs, ups := e.left(t, dest.GetPrefix()); len(objs) != 0 || ups != 0 {
		t.Errorf("left %v and %d uploads", objs, ups)
	}
	if files, _ := filepath.Glob(filepath.Join(e.r.dataDir, "staging", "*.stage")); len(files) != 0 {
		t.Errorf("staged input kept: %v", files)
	}
}

// grpcurl, with nothing but reflection, lists the delivery an engineer
// looks for, with its objects.
func TestGrpcurlListsDeliveries(t *testing.T) {
	grpcurl := filepath.Join(localserver.ToolsDir(), "grpcurl")
	if _, err := os.Stat(grpcurl); err != nil {
		t.Fatalf("grpcurl is not built in %s: run `make tools`", localserver.ToolsDir())
	}
	e := startDelivering(t, nil)
	dest := e.destination(t, "seen", &destinationv1.Destination{Format: csvFormat()})
	d, err := e.deliver(context.Background(), dest.GetName(), reader(t, customerBatches(t, 100, 100)), e.admin, &deliveryv1.DeliveryStart{OutputName: "seen"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.r.users.Mint("eng@acme.test", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(grpcurl, "-plaintext", "-H", "authorization: Bearer "+tok,
		"-d", `{"parent":"`+production+`","filter":"state = SUCCEEDED"}`,
		e.r.addrs["delivery"], "sluice.delivery.v1.DeliveryService/ListDeliveries").CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl: %v\n%s", err, out)
	}
	var listed struct {
		Deliveries []struct {
			Name    string `json:"name"`
			State   string `json:"state"`
			Objects []struct {
				Key    string `json:"key"`
				Crc32c string `json:"crc32c"`
			} `json:"objects"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(out, &listed); err != nil {
		t.Fatalf("grpcurl printed %s: %v", out, err)
	}
	if len(listed.Deliveries) != 1 || listed.Deliveries[0].Name != d.GetName() || listed.Deliveries[0].State != "DELIVERY_STATE_SUCCEEDED" ||
		len(listed.Deliveries[0].Objects) != 1 || listed.Deliveries[0].Objects[0].Crc32c != d.GetObjects()[0].GetCrc32C() {
		t.Fatalf("grpcurl listed %s", out)
	}
}

// MinIO stops for seconds in the middle of a delivery and comes back: the
// delivery runs again from its staged input and succeeds without the caller
// sending anything twice, landing what an uninterrupted delivery lands,
// with no multipart upload left behind.
func TestDeliverySurvivesAnS3Outage(t *testing.T) {
	m := testenv.NewMinIO(t)
	e := startDeliveringOn(t, m, nil)
	recs := customerBatches(t, 6000, 500)
	settings := func() *destinationv1.Destination {
		return &destinationv1.Destination{Format: csvFormat(), Split: &destinationv1.Split{MaxRows: 1500}, SuccessFile: true}
	}
	whole, outage := e.destination(t, "whole", settings()), e.destination(t, "outage", settings())
	ctx := context.Background()
	want, err := e.deliver(ctx, whole.GetName(), reader(t, recs), e.admin, &deliveryv1.DeliveryStart{OutputName: "out"})
	if err != nil {
		t.Fatal(err)
	}
	br := &blockingAfter{RecordReader: reader(t, recs), after: 5, release: make(chan struct{})}
	done := make(chan error, 1)
	var got *deliveryv1.Delivery
	go func() {
		var err error
		got, err = deliverclient.Deliver(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: outage.GetName(), OutputName: "out"}, br,
			deliverclient.Options{MessageBytes: 64 << 10, CallOptions: []grpc.CallOption{e.admin}})
		done <- err
	}()
	for range 200 { // the first files landed
		if objs, _ := e.left(t, outage.GetPrefix()); len(objs) >= 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	outageDone := make(chan error, 1)
	go func() { outageDone <- m.Outage(4 * time.Second) }()
	for range 200 { // MinIO is down
		if _, err := m.S3("", "").ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(br.release) // the rest of the stream meets the outage
	if err := <-outageDone; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the delivery did not survive the outage: %v", err)
	}
	if got.GetProgress().GetRows() != 6000 || len(got.GetObjects()) != len(want.GetObjects()) {
		t.Fatalf("after the outage: %d rows in %d objects, want 6000 in %d", got.GetProgress().GetRows(), len(got.GetObjects()), len(want.GetObjects()))
	}
	for i, obj := range got.GetObjects() {
		e.checkObject(t, obj)
		if strings.TrimPrefix(obj.GetKey(), outage.GetPrefix()) != strings.TrimPrefix(want.GetObjects()[i].GetKey(), whole.GetPrefix()) || obj.GetChecksum() != want.GetObjects()[i].GetChecksum() {
			t.Errorf("object %d: %s %s, uninterrupted %s %s", i, obj.GetKey(), obj.GetChecksum(), want.GetObjects()[i].GetKey(), want.GetObjects()[i].GetChecksum())
		}
	}
	if objs, ups := e.left(t, outage.GetPrefix()); len(objs) != len(want.GetObjects()) || ups != 0 {
		t.Errorf("the prefix holds %v and %d multipart uploads", objs, ups)
	}
}

// blockingAfter yields after batches, then waits for release.
type blockingAfter struct {
	array.RecordReader
	n, after int
	release  chan struct{}
}

func (b *blockingAfter) Next() bool {
	if b.n++; b.n == b.after+1 {
		<-b.release
	}
	return b.RecordReader.Next()
}

// The sweeper touches only uploads Sluice recorded (#22: it aborted a
// customer's own upload under the prefix): an upload recorded for a
// delivery that ended and that no work will finish is aborted once past
// the grace period, and so is an upload of a recorded key whose id was
// never recorded (a crash between creating and recording it); a running
// delivery's upload is never touched, however old; a customer's upload
// under the destination's prefix survives every sweep.
func TestSweeperAbortsOnlyUploadsSluiceRecorded(t *testing.T) {
	const grace = 3 * time.Second
	db := "sqlite:" + filepath.Join(t.TempDir(), "delivery.db")
	e := startDelivering(t, func(c *serveConfig) {
		c.Delivery.SweepInterval, c.Delivery.SweepGrace = 200*time.Millisecond, grace
		c.Delivery.PartSize = multipart.MinPartSize
		c.DeliveryDB = db
		c.MetricsAddr = "127.0.0.1:0"
	})
	ctx := context.Background()
	dest := e.destination(t, "swept", &destinationv1.Destination{Format: csvFormat()})
	s3c := e.m.S3("", "")
	uploads := func() map[string]bool {
		ids := map[string]bool{}
		for id := range uploadsUnder(t, s3c, e.bucket, "swept/") {
			ids[id] = true
		}
		return ids
	}
	create := func(key string) string {
		out, err := s3c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.UploadId)
	}
	// The customer's own uploads, under the prefix and beside it.
	foreign := []string{create("swept/customer-backup/huge.bin"), create("customer-backup/huge.bin")}
	// A delivery that ended, with records left over: an upload it
	// recorded, and a key whose upload it created but never recorded.
	ended, err := e.deliver(ctx, dest.GetName(), reader(t, customerBatches(t, 100, 100)), e.admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Before the orphans exist: a sweeper that waits out the grace period
	// aborts them no sooner than this plus the grace.
	created := time.Now()
	recordedOrphan := create("swept/orphan.csv")
	if err := st.RecordWrite(ctx, ended.GetName(), store.Write{Bucket: e.bucket, Key: "swept/orphan.csv", UploadID: recordedOrphan}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordWrite(ctx, ended.GetName(), store.Write{Bucket: e.bucket, Key: "swept/window.csv"}); err != nil {
		t.Fatal(err)
	}
	windowOrphan := create("swept/window.csv")
	// A delivery that has an upload open, and pauses past the grace period.
	br := &blockingAfter{RecordReader: reader(t, customerBatches(t, 60_000, 5000)), after: 8, release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := deliverclient.Deliver(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "live"}, br,
			deliverclient.Options{MessageBytes: 256 << 10, CallOptions: []grpc.CallOption{e.admin}})
		done <- err
	}()
	var live string
	for range 400 {
		for id := range uploads() {
			if id != recordedOrphan && id != windowOrphan && id != foreign[0] {
				live = id
			}
		}
		if live != "" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if live == "" {
		t.Fatal("the running delivery never opened an upload")
	}
	for range 300 { // past the grace period
		if ids := uploads(); !ids[recordedOrphan] && !ids[windowOrphan] {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if time.Since(created) < grace {
		t.Fatalf("the sweeper aborted within the grace period")
	}
	time.Sleep(time.Second) // several more sweeps
	ids := uploads()
	if ids[recordedOrphan] || ids[windowOrphan] {
		t.Fatalf("past the grace period: recorded orphan kept %v, unrecorded upload of a recorded key kept %v", ids[recordedOrphan], ids[windowOrphan])
	}
	if !ids[live] || !ids[foreign[0]] {
		t.Fatalf("the sweeper aborted the running delivery's upload (%v) or the customer's own under the prefix (%v)", !ids[live], !ids[foreign[0]])
	}
	if all := uploadsUnder(t, s3c, e.bucket, ""); all[foreign[1]] == "" {
		t.Fatal("the sweeper aborted the customer's upload outside the prefix")
	}
	close(br.release)
	if err := <-done; err != nil {
		t.Fatalf("the running delivery, its upload untouched: %v", err)
	}
	// The ended delivery's records go once nothing of them is open.
	for range 100 {
		if w, _ := st.Writes(ctx, ended.GetName()); len(w) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if w, _ := st.Writes(ctx, ended.GetName()); len(w) != 0 {
		t.Errorf("the succeeded delivery's leftover records stay: %v", w)
	}
	// The metric says what the sweeper aborted: the two orphans, once each.
	if fams, _ := scrape(t, e.r.metrics); sum(fams, "sluice_delivery_sweeper_aborted_uploads_total") != 2 {
		t.Errorf("sweeper aborted uploads: %v, want 2", sum(fams, "sluice_delivery_sweeper_aborted_uploads_total"))
	}
	for _, id := range foreign {
		_, _ = s3c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(e.bucket), Key: aws.String(map[string]string{foreign[0]: "swept/customer-backup/huge.bin", foreign[1]: "customer-backup/huge.bin"}[id]), UploadId: aws.String(id)})
	}
}

// cuttingProxy forwards TCP to target and, once, drops every connection
// after cutAfter bytes went from client to server: a network that fails
// in the middle of a stream.
type cuttingProxy struct {
	lis      net.Listener
	target   string
	cutAfter int64
	sent     atomic.Int64
	cut      atomic.Bool
	mu       sync.Mutex
	conns    []net.Conn
}

func startCuttingProxy(t *testing.T, target string, cutAfter int64) *cuttingProxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{lis: lis, target: target, cutAfter: cutAfter}
	t.Cleanup(func() { lis.Close(); p.dropAll() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, &counting{r: c, p: p}); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *cuttingProxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

type counting struct {
	r io.Reader
	p *cuttingProxy
}

func (c *counting) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if c.p.sent.Add(int64(n)) > c.p.cutAfter && c.p.cut.CompareAndSwap(false, true) {
		go c.p.dropAll()
	}
	return n, err
}

// The Go client resumes by itself when the network drops the connection in
// the middle of a delivery: it asks where to resume and sends the rest,
// and what lands equals an uninterrupted delivery.
func TestDeliverClientResumesAfterTheNetworkDrops(t *testing.T) {
	e := startDelivering(t, nil)
	recs := customerBatches(t, 6000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	settings := func() *destinationv1.Destination {
		return &destinationv1.Destination{Format: csvFormat(), Split: &destinationv1.Split{MaxRows: 2500}}
	}
	whole, dropped := e.destination(t, "whole", settings()), e.destination(t, "dropped", settings())
	ctx := context.Background()
	want, err := deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: whole.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	if err != nil {
		t.Fatal(err)
	}
	proxy := startCuttingProxy(t, e.r.addrs["delivery"], int64(len(stream)/2))
	cc, err := grpc.NewClient(proxy.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	opens := 0
	got, err := deliverclient.DeliverResumable(ctx, deliveryv1.NewDeliveryServiceClient(cc),
		&deliveryv1.DeliveryStart{Destination: dropped.GetName(), OutputName: "out", IdempotencyKey: "flaky-network"},
		func() (io.Reader, error) { opens++; return bytes.NewReader(stream), nil },
		deliverclient.Options{MessageBytes: 64 << 10, CallOptions: []grpc.CallOption{e.admin}}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !proxy.cut.Load() || opens < 2 {
		t.Fatalf("the network never dropped (cut %v, %d attempts)", proxy.cut.Load(), opens)
	}
	if got.GetStagedInput().GetBytes() != int64(len(stream)) || len(got.GetObjects()) != len(want.GetObjects()) {
		t.Fatalf("resumed delivery: %v", got)
	}
	for i, obj := range got.GetObjects() {
		if strings.TrimPrefix(obj.GetKey(), "dropped/") != strings.TrimPrefix(want.GetObjects()[i].GetKey(), "whole/") || obj.GetChecksum() != want.GetObjects()[i].GetChecksum() {
			t.Errorf("object %d: %s %s, uninterrupted %s %s", i, obj.GetKey(), obj.GetChecksum(), want.GetObjects()[i].GetKey(), want.GetObjects()[i].GetChecksum())
		}
	}
}

// Held input does not outlive its time: an interrupted stream not resumed
// within the window fails with STREAM_ENDED_EARLY, and a failed delivery's
// input is deleted after the retention period, the delivery saying so.
func TestStagedInputExpires(t *testing.T) {
	e := startDelivering(t, func(c *serveConfig) {
		c.Delivery.ResumeWindow, c.Delivery.StagingRetention, c.Delivery.RecoverInterval = time.Second, time.Second, 200*time.Millisecond
	})
	ctx := context.Background()
	recs := customerBatches(t, 2000, 500)
	stream := ipcBytes(t, recs[0].Schema(), recs...)

	// A delivery to a bucket its credential may not write fails once its
	// stream is in.
	missing := e.destination(t, "missing", &destinationv1.Destination{Format: csvFormat(), BucketOverride: "no-such-bucket-" + e.bucket})
	_, err := deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: missing.GetName()}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	if apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_ACCESS_DENIED {
		t.Fatalf("got %v, want ACCESS_DENIED", err)
	}
	// A delivery whose caller goes away halfway.
	cut := e.destination(t, "cut", &destinationv1.Destination{Format: csvFormat()})
	cctx, cancel := context.WithCancel(ctx)
	call, err := e.delivs.Deliver(cctx, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	_ = call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_Start{Start: &deliveryv1.DeliveryStart{Destination: cut.GetName(), IdempotencyKey: "k"}}})
	_ = call.Send(&deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: stream[:len(stream)/2]}})
	time.Sleep(300 * time.Millisecond)
	cancel()

	var failed, ended *deliveryv1.Delivery
	for range 100 {
		list, err := e.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, Filter: "state = FAILED"}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		failed, ended = nil, nil
		for _, d := range list.GetDeliveries() {
			if d.GetStagedInput().GetState() != deliveryv1.StagedInputState_STAGED_INPUT_STATE_EXPIRED {
				continue
			}
			switch d.GetDestination() {
			case missing.GetName():
				failed = d
			case cut.GetName():
				ended = d
			}
		}
		if failed != nil && ended != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if failed == nil || !strings.Contains(failed.GetError().GetMessage(), "has expired") || failed.GetError().GetReason() != "ACCESS_DENIED" {
		t.Fatalf("the failed delivery after its retention: %v", failed)
	}
	if ended == nil || ended.GetError().GetReason() != "STREAM_ENDED_EARLY" {
		t.Fatalf("the interrupted delivery after its window: %v", ended)
	}
	// The input is deleted right after the state says EXPIRED: wait for it.
	var files []string
	for range 100 {
		if files, _ = filepath.Glob(filepath.Join(e.r.dataDir, "staging", "*.stage")); len(files) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(files) != 0 {
		t.Errorf("expired input still staged: %v", files)
	}
	// Nothing is left to run again: the workflows offer no action, say why,
	// and Resolve answers that the data expired.
	flows := deliveryv1.NewWorkflowServiceClient(e.r.conns["delivery"])
	for _, d := range []*deliveryv1.Delivery{failed, ended} {
		wf, err := flows.GetWorkflow(ctx, &deliveryv1.GetWorkflowRequest{Name: d.GetWorkflow()}, e.admin)
		if err != nil {
			t.Fatal(err)
		}
		var failing *deliveryv1.WorkflowStep
		for _, st := range wf.GetSteps() {
			if st.GetState() == deliveryv1.StepState_STEP_STATE_FAILED {
				failing = st
			}
		}
		if wf.GetState() != deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED || len(wf.GetActions()) != 0 || failing.GetError().GetReason() != d.GetError().GetReason() ||
			failing.GetError().GetMessage() != d.GetError().GetMessage() {
			t.Errorf("workflow of %s after its input expired: %v", d.GetError().GetReason(), wf)
		}
	}
	_, err = deliveryv1.NewWorkflowServiceClient(e.r.conns["delivery"]).ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: failed.GetWorkflow(), ActionId: "retry-task"}, e.admin)
	if apierror.FromStatus(err).Reason != errorsv1.ErrorReason_ERROR_REASON_STAGED_INPUT_EXPIRED {
		t.Errorf("resolving after the input expired: %v", err)
	}
}

// S3 is served over HTTPS: against a MinIO whose certificate comes from a
// private CA (given as --aws-ca-bundle), the credential's role is assumed,
// the destination's connection test passes and a delivery lands, read back
// whole, with its checksums; the services reach S3 only through the CA
// they were given.
func TestDeliverOverHTTPSWithAPrivateCA(t *testing.T) {
	m := testenv.NewMinIOWithTLS(t)
	if !strings.HasPrefix(m.Endpoint, "https://") || m.CAFile == "" {
		t.Fatalf("MinIO at %s with CA %q: want HTTPS", m.Endpoint, m.CAFile)
	}
	t.Setenv("AWS_CA_BUNDLE", "") // only --aws-ca-bundle is trusted here
	e := startDeliveringOn(t, m, nil)
	format := &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}}
	dest := e.destination(t, "tls", &destinationv1.Destination{Format: format})
	ctx := context.Background()
	res, err := e.dests.TestDestination(ctx, &destinationv1.TestDestinationRequest{Name: dest.GetName()}, e.admin)
	if err != nil || !res.GetOk() {
		t.Fatalf("connection test over HTTPS: %s, %v", connectiontest.Summary(res), err)
	}
	recs := customerBatches(t, 3000, 1000)
	d, err := e.deliver(ctx, dest.GetName(), reader(t, recs), e.admin, &deliveryv1.DeliveryStart{OutputName: "tls"})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetState() != deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED || len(d.GetObjects()) != 1 {
		t.Fatalf("delivery %s with %d objects", d.GetState(), len(d.GetObjects()))
	}
	ids, _, _ := readBack(t, e.checkObject(t, d.GetObjects()[0]), format)
	if want := column(recs, "customer_id"); !slices.Equal(ids, want) {
		t.Fatalf("read back %d ids, sent %d (or in another order)", len(ids), len(want))
	}
}
