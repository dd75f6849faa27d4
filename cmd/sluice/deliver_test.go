package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"google.golang.org/grpc"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/sampledata"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// delivering is `sluice serve` on MinIO with a credential on one bucket.
type delivering struct {
	r      *running
	m      *testenv.MinIO
	bucket string
	admin  grpc.CallOption
	cred   string
	dests  destinationv1.DestinationServiceClient
	delivs deliveryv1.DeliveryServiceClient
}

const production = "tenants/acme/environments/production"

func startDelivering(t *testing.T, adjust func(*serveConfig)) *delivering {
	t.Helper()
	m := testenv.SharedMinIO(t)
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
	e := &delivering{r: r, m: m, bucket: bucket, admin: r.token("acme", auth.PolicyAdministrator),
		dests: destinationv1.NewDestinationServiceClient(r.conns["destination"]), delivs: deliveryv1.NewDeliveryServiceClient(r.conns["delivery"])}
	cred, err := credentialv1.NewCredentialServiceClient(r.conns["credential"]).CreateCredential(ctx, &credentialv1.CreateCredentialRequest{
		Parent: production, CredentialId: "minio",
		Credential: &credentialv1.Credential{Bucket: bucket, Region: m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: key, SecretAccessKey: secret}}},
	}, e.admin)
	if err != nil {
		t.Fatal(err)
	}
	e.cred = cred.GetName()
	return e
}

// destination creates a destination writing under its own prefix.
func (e *delivering) destination(t *testing.T, id string, d *destinationv1.Destination) *destinationv1.Destination {
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
	ups, err := s3c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(e.bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	return objects, len(ups.Uploads)
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
func customerBatches(t *testing.T, rows int64, batchRows int) []arrow.RecordBatch {
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
