package destination

import (
	"errors"
	"strings"
	"testing"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/resourcename"
)

func TestValidateDestination(t *testing.T) {
	parent := resourcename.Parent{Tenant: "acme", Environment: "sandbox"}
	valid := func() *destinationv1.Destination {
		return &destinationv1.Destination{
			Credential: "tenants/acme/environments/sandbox/credentials/c",
			Format:     &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}},
		}
	}
	tests := []struct {
		name   string
		change func(*destinationv1.Destination)
		field  string // "" when valid
	}{
		{"valid", func(*destinationv1.Destination) {}, ""},
		{"no format", func(d *destinationv1.Destination) { d.Format = nil }, "destination.format"},
		{"credential of another environment", func(d *destinationv1.Destination) {
			d.Credential = "tenants/acme/environments/production/credentials/c"
		}, "destination.credential"},
		{"credential not a name", func(d *destinationv1.Destination) { d.Credential = "c" }, "destination.credential"},
		{"two-character delimiter", func(d *destinationv1.Destination) {
			d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: ";;"}}}
		}, "destination.format.delimited.delimiter"},
		{"quote as delimiter", func(d *destinationv1.Destination) {
			d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: `"`}}}
		}, "destination.format.delimited.delimiter"},
		{"tab delimiter", func(d *destinationv1.Destination) {
			d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: "\t"}}}
		}, ""},
		{"parquet v2 pages, no dictionary, zstd", func(d *destinationv1.Destination) {
			d.Format.GetParquet().DataPageVersion = destinationv1.ParquetDataPageVersion_PARQUET_DATA_PAGE_VERSION_2
			d.Format.GetParquet().Dictionary = destinationv1.ParquetDictionary_PARQUET_DICTIONARY_NEVER
			d.Format.GetParquet().Codec = destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD
		}, ""},
		{"unknown parquet codec", func(d *destinationv1.Destination) { d.Format.GetParquet().Codec = 9 }, "destination.format.parquet.codec"},
		{"unknown data page version", func(d *destinationv1.Destination) { d.Format.GetParquet().DataPageVersion = 3 }, "destination.format.parquet.data_page_version"},
		{"unknown dictionary choice", func(d *destinationv1.Destination) { d.Format.GetParquet().Dictionary = 7 }, "destination.format.parquet.dictionary"},
		{"negative row group rows", func(d *destinationv1.Destination) { d.Format.GetParquet().RowGroupRows = -1 }, "destination.format.parquet.row_group_rows"},
		{"split under 1 MB", func(d *destinationv1.Destination) { d.Split = &destinationv1.Split{MaxBytes: 999_999} }, "destination.split.max_bytes"},
		{"split at 1 MB", func(d *destinationv1.Destination) { d.Split = &destinationv1.Split{MaxBytes: 1_000_000} }, ""},
		{"negative rows", func(d *destinationv1.Destination) { d.Split = &destinationv1.Split{MaxRows: -1} }, "destination.split.max_rows"},
		{"KMS without key", func(d *destinationv1.Destination) {
			d.Encryption = &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS}
		}, "destination.encryption.kms_key_id"},
		{"KMS key that is no key id, alias or ARN", func(d *destinationv1.Destination) {
			d.Encryption = &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS, KmsKeyId: "my key"}
		}, "destination.encryption.kms_key_id"},
		{"KMS alias", func(d *destinationv1.Destination) {
			d.Encryption = &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS, KmsKeyId: "alias/exports"}
		}, ""},
		{"key without KMS", func(d *destinationv1.Destination) {
			d.Encryption = &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_S3, KmsKeyId: "k"}
		}, "destination.encryption.kms_key_id"},
		{"eleven tags", func(d *destinationv1.Destination) {
			d.Tags = map[string]string{}
			for i := range 11 {
				d.Tags[string(rune('a'+i))] = "v"
			}
		}, "destination.tags"},
		{"bucket owner not an account", func(d *destinationv1.Destination) { d.ExpectedBucketOwner = "12345" }, "destination.expected_bucket_owner"},
		{"template that does not parse", func(d *destinationv1.Destination) { d.FilenameTemplate = "C360_{{now|format:'MM-QQ'}}.csv" }, "destination.filename_template"},
		{"template", func(d *destinationv1.Destination) {
			d.FilenameTemplate = "C360_{{now|local:'America/Los_Angeles'|format:'MM-dd-yyyy'}}.csv.gz"
		}, ""},
		{"split without file number", func(d *destinationv1.Destination) {
			d.Split = &destinationv1.Split{MaxRows: 1000}
			d.FilenameTemplate = "out_{{now|format:'yyyy'}}.csv"
		}, "destination.filename_template"},
		{"PGP key that is not a key", func(d *destinationv1.Destination) { d.PgpPublicKey = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnope" }, "destination.pgp_public_key"},
		{"keys over S3's 1,024 bytes", func(d *destinationv1.Destination) {
			d.Prefix = strings.Repeat("p/", 400)
			d.FilenameTemplate = "{{output_name}}_{{now|format:'MMMM EEEE'}}.parquet"
		}, "destination.filename_template"},
		{"description too long", func(d *destinationv1.Destination) { d.Description = strings.Repeat("x", 2001) }, "destination.description"},
		// Issue 9, item 8: bucket_override was not validated at all.
		{"bucket override 1 MiB", func(d *destinationv1.Destination) { d.BucketOverride = strings.Repeat("b", 1<<20) }, "destination.bucket_override"},
		{"bucket override with CR LF", func(d *destinationv1.Destination) { d.BucketOverride = "acme\r\nexports" }, "destination.bucket_override"},
		{"bucket override an IP address", func(d *destinationv1.Destination) { d.BucketOverride = "192.168.1.10" }, "destination.bucket_override"},
		{"bucket override in another partition", func(d *destinationv1.Destination) {
			d.BucketOverride = "arn:aws-iso:s3:us-iso-east-1:123456789012:accesspoint/x"
		}, "destination.bucket_override"},
		{"bucket override access point", func(d *destinationv1.Destination) {
			d.BucketOverride = "arn:aws:s3:eu-west-1:123456789012:accesspoint/exports"
		}, ""},
		// Item 9: paths that climb, root or hide characters.
		{"prefix climbs", func(d *destinationv1.Destination) { d.Prefix = "exports/../../" }, "destination.prefix"},
		{"prefix roots", func(d *destinationv1.Destination) { d.Prefix = "/exports/" }, "destination.prefix"},
		{"prefix with //", func(d *destinationv1.Destination) { d.Prefix = "exports//" }, "destination.prefix"},
		{"prefix with CR LF", func(d *destinationv1.Destination) { d.Prefix = "x\r\n/" }, "destination.prefix"},
		{"template climbs", func(d *destinationv1.Destination) { d.FilenameTemplate = "../../../../etc/cron.d/x.json" }, "destination.filename_template"},
		{"template with a dot segment", func(d *destinationv1.Destination) { d.FilenameTemplate = "./{{output_name}}.json" }, "destination.filename_template"},
		{"template rooted", func(d *destinationv1.Destination) { d.FilenameTemplate = "/{{output_name}}.json" }, "destination.filename_template"},
		{"template with //", func(d *destinationv1.Destination) { d.Prefix = "exports/"; d.FilenameTemplate = "/x.json" }, "destination.filename_template"},
		{"template with a control character", func(d *destinationv1.Destination) { d.FilenameTemplate = "x\r\n.json" }, "destination.filename_template"},
		{"template with folders", func(d *destinationv1.Destination) {
			d.FilenameTemplate = "customer_360/{{now|next_day|format:'yyyy/MM/dd'}}/Customer_360.tsv.gz"
		}, ""},
		{"display name with a bidi override", func(d *destinationv1.Destination) { d.DisplayName = "invoice\u202egnp.exe" }, "destination.display_name"},
		{"display name with a newline", func(d *destinationv1.Destination) { d.DisplayName = "a\nb" }, "destination.display_name"},
		{"description with lines", func(d *destinationv1.Destination) { d.Description = "line one\nline two\ttabbed" }, ""},
		{"description with a zero-width space", func(d *destinationv1.Destination) { d.Description = "a\u200bb" }, "destination.description"},
		// Item 10: anything after alias/aws/ passed, CR LF and 100 KB too.
		{"KMS alias/aws/ with CR LF", func(d *destinationv1.Destination) {
			d.Encryption = &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS, KmsKeyId: "alias/aws/s3\r\nX: y"}
		}, "destination.encryption.kms_key_id"},
		{"KMS AWS managed alias", func(d *destinationv1.Destination) {
			d.Encryption = &destinationv1.Encryption{Kind: destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS, KmsKeyId: "alias/aws/s3"}
		}, ""},
		// Issue 10, item 3.
		{"quote mode none with an empty null text", func(d *destinationv1.Destination) {
			d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_NONE, Escape: `\`}}}
		}, "destination.format.delimited.null_value"},
		{"quote mode none with a null text", func(d *destinationv1.Destination) {
			d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_NONE, Escape: `\`, NullValue: `\N`}}}
		}, ""},
		// Issue 22, item 5.
		{"quote mode all with an empty null text", func(d *destinationv1.Destination) {
			d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_ALL}}}
		}, "destination.format.delimited.null_value"},
		{"quote mode all with a null text", func(d *destinationv1.Destination) {
			d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_ALL, NullValue: "NULL"}}}
		}, ""},
		{"quote mode all non-NULL with an empty null text", func(d *destinationv1.Destination) {
			d.Format = &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_ALL_NON_NULL}}}
		}, ""},
		{"tag value with CR LF", func(d *destinationv1.Destination) { d.Tags = map[string]string{"team": "a\r\nb"} }, `destination.tags["team"]`},
		// Issue 25: partitioned output.
		{"partitioned", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{TimeZone: "Europe/Paris", Fields: []*destinationv1.PartitionField{{Column: "country"},
				{Column: "at", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_DAY}, {Column: "id", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET, Buckets: 16}}}
		}, ""},
		{"no partition fields", func(d *destinationv1.Destination) { d.PartitionBy = &destinationv1.Partitioning{} }, "destination.partition_by.fields"},
		{"nine partition fields", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{}
			for i := range 9 {
				d.PartitionBy.Fields = append(d.PartitionBy.Fields, &destinationv1.PartitionField{Column: string(rune('a' + i))})
			}
		}, "destination.partition_by.fields"},
		{"partition column missing", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{{}}}
		}, "destination.partition_by.fields[0].column"},
		{"bucket without a count", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{{Column: "id", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET}}}
		}, "destination.partition_by.fields[0].buckets"},
		{"buckets without the bucket transform", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{{Column: "id", Buckets: 4}}}
		}, "destination.partition_by.fields[0].buckets"},
		{"folder name with a slash", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{{Column: "id", Name: "a/b"}}}
		}, "destination.partition_by.fields[0].name"},
		{"two fields, one folder", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{{Column: "at", Transform: destinationv1.PartitionTransform_PARTITION_TRANSFORM_DAY}, {Column: "x", Name: "at_day"}}}
		}, "destination.partition_by.fields[1]"},
		{"unknown time zone", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{TimeZone: "Mars/Olympus", Fields: []*destinationv1.PartitionField{{Column: "id"}}}
		}, "destination.partition_by.time_zone"},
		{"too many open files", func(d *destinationv1.Destination) {
			d.PartitionBy = &destinationv1.Partitioning{MaxOpenFiles: 5000, Fields: []*destinationv1.PartitionField{{Column: "id"}}}
		}, "destination.partition_by.max_open_files"},
		{"partitioned without a file number", func(d *destinationv1.Destination) {
			d.FilenameTemplate = "{{output_name}}.parquet"
			d.PartitionBy = &destinationv1.Partitioning{Fields: []*destinationv1.PartitionField{{Column: "id"}}}
		}, "destination.filename_template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.change(d)
			var v apierror.Violations
			validateDestination(&v, d, parent, true)
			err := v.Err()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid destination refused: %v", err)
				}
				return
			}
			var e *apierror.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want a violation of %s", err, tt.field)
			}
			for _, fv := range e.Violations {
				if fv.Field == tt.field {
					return
				}
			}
			t.Fatalf("violations %v do not name %s", e.Violations, tt.field)
		})
	}
}
