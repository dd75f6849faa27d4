package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
)

// The Configure destination dialog shows what is stored and, saved
// unchanged, sends back the same settings: no setting is lost or changed
// by opening and saving the form.
func TestSettingsFormRoundTrips(t *testing.T) {
	yes, no := true, false
	const parent = "tenants/acme/environments/production"
	for name, d := range map[string]*destinationv1.Destination{
		"parquet": {Credential: parent + "/credentials/minio", DisplayName: "Exports", Description: "nightly", Prefix: "exports/",
			BucketOverride: "other", FilenameTemplate: "{{output_name}}-{{part}}", SuccessFile: true, Manifest: true,
			Access: &destinationv1.Access{AdminOnly: true, AllowLimitedPii: true},
			Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{
				Codec: destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD, RowGroupRows: 5000, Extension: &no,
				DataPageVersion: destinationv1.ParquetDataPageVersion_PARQUET_DATA_PAGE_VERSION_2, Dictionary: destinationv1.ParquetDictionary_PARQUET_DICTIONARY_NEVER}}},
			RowNumber:    &destinationv1.RowNumber{Enabled: true, ColumnName: "n"},
			Compression:  &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_ZIP, UseZip64: true},
			Split:        &destinationv1.Split{MaxRows: 1000, MaxBytes: 1 << 30},
			Encryption:   &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS, KmsKeyId: "alias/exports"},
			StorageClass: destinationv1.StorageClass_STORAGE_CLASS_GLACIER_IR, CannedAcl: destinationv1.CannedAcl_CANNED_ACL_BUCKET_OWNER_READ,
			ExpectedBucketOwner: "123456789012", Tags: map[string]string{"team": "growth", "cost-centre": "42"},
			PartitionBy: &destinationv1.Partitioning{TimeZone: "Europe/Paris", KeepColumns: true, Fields: []*destinationv1.PartitionField{
				{Column: "country"}, {Column: "signup_date", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_MONTH},
				{Column: "customer_id", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET, Buckets: 16}}},
			PgpPublicKey: "-----BEGIN PGP PUBLIC KEY BLOCK-----\nxyz\n-----END PGP PUBLIC KEY BLOCK-----"},
		"tsv": {Credential: parent + "/credentials/minio", Access: &destinationv1.Access{},
			Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: "\t", Header: &no,
				Escape: "\\", NullValue: "NULL", QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_NON_NUMERIC, LineEnding: destinationv1.LineEnding_LINE_ENDING_CRLF}}},
			Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_GZIP}},
		"ndjson": {Credential: parent + "/credentials/minio", Access: &destinationv1.Access{}, Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}},
			Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_NONE}},
		"csv with a header": {Credential: parent + "/credentials/minio", Access: &destinationv1.Access{},
			Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Header: &yes,
				QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_MINIMAL, LineEnding: destinationv1.LineEnding_LINE_ENDING_LF}}},
			Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_NONE}},
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/destinations/x/edit", strings.NewReader(valuesOf(d).Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if err := r.ParseForm(); err != nil {
				t.Fatal(err)
			}
			got, err := destinationOf(&request{r: r, parent: parent})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(d, got, protocmp.Transform()); diff != "" {
				t.Errorf("saved unchanged, the form sends (-stored +sent):\n%s", diff)
			}
		})
	}
}
