// Package outputspec turns a destination's settings into the fileset
// configuration of one delivery's output, so that the destination service
// (preview, validation) and the delivery service (the pipeline) name and
// shape files the same way.
package outputspec

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	// Partition transforms read times in any IANA zone, on hosts without
	// a zone database too.
	_ "time/tzdata"
	"unicode/utf8"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/awsname"
	"github.com/sluicehq/sluice/pkg/compression"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/multipart"
	"github.com/sluicehq/sluice/pkg/partition"
	"github.com/sluicehq/sluice/pkg/pgpstream"
)

// Config answers the fileset configuration for d, with values for the
// template (the delivery's time and output name).
func Config(d *destinationv1.Destination, values filename.Values) (fileset.Config, error) {
	c := fileset.Config{Prefix: d.GetPrefix(), Values: values, MaxRows: d.GetSplit().GetMaxRows(), MaxBytes: d.GetSplit().GetMaxBytes()}
	var delimiter rune
	switch f := d.GetFormat().GetKind().(type) {
	case *destinationv1.FileFormat_Parquet:
		c.Format = fileset.Parquet
		c.Parquet = arrowfmt.ParquetOptions{RowGroupRows: f.Parquet.GetRowGroupRows(), Codec: map[destinationv1.ParquetCodec]arrowfmt.Codec{
			destinationv1.ParquetCodec_PARQUET_CODEC_UNSPECIFIED: arrowfmt.Snappy,
			destinationv1.ParquetCodec_PARQUET_CODEC_SNAPPY:      arrowfmt.Snappy,
			destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD:        arrowfmt.Zstd,
			destinationv1.ParquetCodec_PARQUET_CODEC_GZIP:        arrowfmt.Gzip,
			destinationv1.ParquetCodec_PARQUET_CODEC_NONE:        arrowfmt.Uncompressed,
		}[f.Parquet.GetCodec()],
			DataPage: map[destinationv1.ParquetDataPageVersion]arrowfmt.DataPageVersion{
				destinationv1.ParquetDataPageVersion_PARQUET_DATA_PAGE_VERSION_2: arrowfmt.DataPageV2,
			}[f.Parquet.GetDataPageVersion()],
			Dictionary: map[destinationv1.ParquetDictionary]arrowfmt.Dictionary{
				destinationv1.ParquetDictionary_PARQUET_DICTIONARY_ALWAYS: arrowfmt.DictionaryAlways,
				destinationv1.ParquetDictionary_PARQUET_DICTIONARY_NEVER:  arrowfmt.DictionaryNever,
			}[f.Parquet.GetDictionary()]}
		c.ParquetExtension = f.Parquet.Extension == nil || f.Parquet.GetExtension()
	case *destinationv1.FileFormat_Delimited:
		c.Format = fileset.Delimited
		del := f.Delimited
		if del.GetDelimiter() != "" {
			delimiter, _ = utf8.DecodeRuneInString(del.GetDelimiter())
		}
		var escape rune
		if del.GetEscape() != "" {
			escape, _ = utf8.DecodeRuneInString(del.GetEscape())
		}
		c.Delimited = arrowfmt.DelimitedOptions{
			Delimiter: delimiter, Header: del.Header == nil || del.GetHeader(), Escape: escape,
			CRLF: del.GetLineEnding() == destinationv1.LineEnding_LINE_ENDING_CRLF, NullValue: del.GetNullValue(),
			Quote: map[destinationv1.QuoteMode]arrowfmt.QuoteMode{
				destinationv1.QuoteMode_QUOTE_MODE_UNSPECIFIED:  arrowfmt.QuoteMinimal,
				destinationv1.QuoteMode_QUOTE_MODE_MINIMAL:      arrowfmt.QuoteMinimal,
				destinationv1.QuoteMode_QUOTE_MODE_ALL:          arrowfmt.QuoteAll,
				destinationv1.QuoteMode_QUOTE_MODE_ALL_NON_NULL: arrowfmt.QuoteAllNonNull,
				destinationv1.QuoteMode_QUOTE_MODE_NON_NUMERIC:  arrowfmt.QuoteNonNumeric,
				destinationv1.QuoteMode_QUOTE_MODE_NONE:         arrowfmt.QuoteNone,
			}[del.GetQuoteMode()],
		}
	case *destinationv1.FileFormat_Json:
		c.Format = fileset.JSON
	case *destinationv1.FileFormat_Ndjson:
		c.Format = fileset.NDJSON
	default:
		return c, fmt.Errorf("the destination has no file format")
	}
	if rn := d.GetRowNumber(); rn.GetEnabled() {
		name := rn.GetColumnName()
		if name == "" {
			name = "row_number"
		}
		c.Delimited.RowNumber, c.JSON.RowNumber = name, name
	}
	c.Compression = map[destinationv1.CompressionKind]compression.Kind{
		destinationv1.CompressionKind_COMPRESSION_KIND_UNSPECIFIED: compression.None,
		destinationv1.CompressionKind_COMPRESSION_KIND_NONE:        compression.None,
		destinationv1.CompressionKind_COMPRESSION_KIND_GZIP:        compression.Gzip,
		destinationv1.CompressionKind_COMPRESSION_KIND_ZIP:         compression.Zip,
		destinationv1.CompressionKind_COMPRESSION_KIND_TAR:         compression.Tar,
		destinationv1.CompressionKind_COMPRESSION_KIND_TGZ:         compression.Tgz,
	}[d.GetCompression().GetKind()]
	c.Zip64 = d.GetCompression().GetUseZip64()
	tmpl := d.GetFilenameTemplate()
	if tmpl == "" {
		tmpl = fileset.DefaultTemplate(c.Format, delimiter, c.Compression)
	}
	t, err := filename.Parse(tmpl)
	if err != nil {
		return c, fmt.Errorf("filename template: %w", err)
	}
	c.Template = t
	if pb := d.GetPartitionBy(); pb != nil {
		spec, err := Partitioning(pb)
		if err != nil {
			return c, err
		}
		c.Partition, c.MaxOpenFiles = spec, int(pb.GetMaxOpenFiles())
	}
	if k := d.GetPgpPublicKey(); k != "" {
		if c.PGP, err = pgpstream.ParseRecipient(k); err != nil {
			return c, fmt.Errorf("PGP public key: %w: %w", ErrPGPKey, err)
		}
	}
	return c, nil
}

// Partitioning answers the partition spec of a destination's
// partition_by.
func Partitioning(pb *destinationv1.Partitioning) (*partition.Spec, error) {
	spec := &partition.Spec{KeepColumns: pb.GetKeepColumns(), Location: time.UTC}
	if tz := pb.GetTimeZone(); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("partition_by.time_zone %q: not an IANA time zone", tz)
		}
		spec.Location = loc
	}
	for _, f := range pb.GetFields() {
		spec.Fields = append(spec.Fields, partition.Field{Column: f.GetColumn(), Buckets: int(f.GetBuckets()), Name: f.GetName(),
			Transform: map[destinationv1.PartitionTransform]partition.Transform{
				destinationv1.PartitionTransform_PARTITION_TRANSFORM_YEAR:   partition.Year,
				destinationv1.PartitionTransform_PARTITION_TRANSFORM_MONTH:  partition.Month,
				destinationv1.PartitionTransform_PARTITION_TRANSFORM_DAY:    partition.Day,
				destinationv1.PartitionTransform_PARTITION_TRANSFORM_HOUR:   partition.Hour,
				destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET: partition.Bucket,
			}[f.GetTransform()]})
	}
	return spec, nil
}

// ParsePartitionBy reads the short form of partition fields people type
// in a flag or a form: comma-separated `column`, `column:year|month|day|hour`
// or `column:bucket:N` (a column whose name holds `,` or `:` needs the
// settings file). Empty is none.
func ParsePartitionBy(s string) ([]*destinationv1.PartitionField, error) {
	var out []*destinationv1.PartitionField
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		bits := strings.Split(part, ":")
		f := &destinationv1.PartitionField{Column: strings.TrimSpace(bits[0])}
		if len(bits) > 1 {
			t, ok := destinationv1.PartitionTransform_value["PARTITION_TRANSFORM_"+strings.ToUpper(strings.TrimSpace(bits[1]))]
			if !ok {
				return nil, fmt.Errorf("%q: the transform is one of identity, year, month, day, hour or bucket:N", part)
			}
			f.Transform = destinationv1.PartitionTransform(t)
		}
		switch {
		case f.Transform == destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET && len(bits) == 3:
			n, err := strconv.Atoi(strings.TrimSpace(bits[2]))
			if err != nil {
				return nil, fmt.Errorf("%q: the bucket count is a number", part)
			}
			f.Buckets = int32(n)
		case f.Transform == destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET:
			return nil, fmt.Errorf("%q: say how many buckets, as %s:bucket:16", part, f.Column)
		case len(bits) > 2:
			return nil, fmt.Errorf("%q: only bucket takes a number", part)
		}
		out = append(out, f)
	}
	return out, nil
}

// FormatPartitionBy writes partition fields in the short form
// ParsePartitionBy reads (folder names set apart are not shown).
func FormatPartitionBy(fields []*destinationv1.PartitionField) string {
	var parts []string
	for _, f := range fields {
		p := f.GetColumn()
		switch t := f.GetTransform(); t {
		case destinationv1.PartitionTransform_PARTITION_TRANSFORM_UNSPECIFIED, destinationv1.PartitionTransform_PARTITION_TRANSFORM_IDENTITY:
		case destinationv1.PartitionTransform_PARTITION_TRANSFORM_BUCKET:
			p += ":bucket:" + strconv.Itoa(int(f.GetBuckets()))
		default:
			p += ":" + strings.ToLower(strings.TrimPrefix(t.String(), "PARTITION_TRANSFORM_"))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// ExamplePartitionPath answers the folders of an example row, for a
// preview: a time transform's value as of at, a bucket's as 0, and any
// other value as `{column}`.
func ExamplePartitionPath(spec *partition.Spec, at time.Time) string {
	var b strings.Builder
	at = at.In(spec.Location)
	for _, f := range spec.Fields {
		b.WriteString(partition.Escape(f.FolderName()))
		b.WriteByte('=')
		switch f.Transform {
		case partition.Year:
			b.WriteString(at.Format("2006"))
		case partition.Month:
			b.WriteString(at.Format("2006-01"))
		case partition.Day:
			b.WriteString(at.Format("2006-01-02"))
		case partition.Hour:
			b.WriteString(at.Format("2006-01-02-15"))
		case partition.Bucket:
			b.WriteString("0")
		default:
			b.WriteString("{" + f.Column + "}")
		}
		b.WriteByte('/')
	}
	return b.String()
}

// ErrPGPKey is a destination's PGP public key that cannot encrypt (its
// encryption subkey expired or was revoked since it was set).
var ErrPGPKey = errors.New("the key cannot encrypt")

// Object answers how an object of d is written: its bucket and key, and
// the settings S3 applies to it (encryption, storage class, ACL, tags, and
// the bucket owner every request checks).
func Object(d *destinationv1.Destination, bucket, key string) multipart.Object {
	o := multipart.Object{Bucket: bucket, Key: key, ExpectedBucketOwner: d.GetExpectedBucketOwner()}
	switch d.GetEncryption().GetKind() {
	case destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_S3:
		o.ServerSideEncryption = s3types.ServerSideEncryptionAes256
	case destinationv1.EncryptionKind_ENCRYPTION_KIND_SSE_KMS:
		o.ServerSideEncryption, o.SSEKMSKeyID = s3types.ServerSideEncryptionAwsKms, d.GetEncryption().GetKmsKeyId()
	}
	o.ACL = map[destinationv1.CannedAcl]s3types.ObjectCannedACL{
		destinationv1.CannedAcl_CANNED_ACL_PRIVATE:                   s3types.ObjectCannedACLPrivate,
		destinationv1.CannedAcl_CANNED_ACL_BUCKET_OWNER_FULL_CONTROL: s3types.ObjectCannedACLBucketOwnerFullControl,
		destinationv1.CannedAcl_CANNED_ACL_BUCKET_OWNER_READ:         s3types.ObjectCannedACLBucketOwnerRead,
	}[d.GetCannedAcl()]
	o.StorageClass = map[destinationv1.StorageClass]s3types.StorageClass{
		destinationv1.StorageClass_STORAGE_CLASS_STANDARD:            s3types.StorageClassStandard,
		destinationv1.StorageClass_STORAGE_CLASS_STANDARD_IA:         s3types.StorageClassStandardIa,
		destinationv1.StorageClass_STORAGE_CLASS_ONEZONE_IA:          s3types.StorageClassOnezoneIa,
		destinationv1.StorageClass_STORAGE_CLASS_INTELLIGENT_TIERING: s3types.StorageClassIntelligentTiering,
		destinationv1.StorageClass_STORAGE_CLASS_GLACIER_IR:          s3types.StorageClassGlacierIr,
		destinationv1.StorageClass_STORAGE_CLASS_GLACIER:             s3types.StorageClassGlacier,
		destinationv1.StorageClass_STORAGE_CLASS_DEEP_ARCHIVE:        s3types.StorageClassDeepArchive,
	}[d.GetStorageClass()]
	if len(d.GetTags()) > 0 {
		q := url.Values{}
		for k, v := range d.GetTags() {
			q.Set(k, v)
		}
		o.Tagging = q.Encode()
	}
	return o
}

// MaxKeyBytes is S3's limit on an object key.
const MaxKeyBytes = 1024

// WorstCaseKeyBytes answers how long a data file's key can get: the
// template filled in with the longest month and weekday names, a five-digit
// file number and the longest output name.
func WorstCaseKeyBytes(c fileset.Config) int {
	c.Values = filename.Values{
		Now:        time.Date(2026, time.September, 30, 23, 59, 59, 999999999, time.UTC), // a Wednesday
		FileNumber: 99999,
		OutputName: strings.Repeat("x", 200),
	}
	return len(c.Key(99999))
}

// MaxOutputNameChars bounds an output name, as the worst-case key length
// assumes.
const MaxOutputNameChars = 200

// CheckOutputName checks the name a delivery gives its output: it becomes
// one segment of object keys (`{{output_name}}`, Parquet folders, the
// success and manifest files), so it is 1 to 200 characters of UTF-8
// without slashes, `.` or `..`, control or formatting characters.
func CheckOutputName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("is required")
	case !utf8.ValidString(name):
		return fmt.Errorf("must be valid UTF-8")
	case utf8.RuneCountInString(name) > MaxOutputNameChars:
		return fmt.Errorf("must be at most %d characters", MaxOutputNameChars)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("must not contain a slash: it is one segment of the object keys")
	case name == "." || name == "..":
		return fmt.Errorf("must not be %q", name)
	}
	if r, bad := awsname.UnsafeRune(name); bad {
		return fmt.Errorf("must not contain the control or formatting character %U", r)
	}
	return nil
}

// CheckKeys renders the keys of c's first files and checks each as an
// object key, so that a template or output name that would climb out of
// the prefix (`../`), root a path or hide characters is refused before
// anything is written.
func CheckKeys(c fileset.Config, files int) error {
	for n := 1; n <= max(files, 1); n++ {
		k := c.Key(n)
		if err := awsname.CheckObjectKey(k); err != nil {
			return fmt.Errorf("object key %q: %w", k, err)
		}
	}
	return nil
}

// FormatName names a destination's format as people and metrics do:
// parquet, csv, tsv, psv, "delimited" for another delimiter, json or
// ndjson ("" when it has none).
func FormatName(d *destinationv1.Destination) string {
	switch f := d.GetFormat().GetKind().(type) {
	case *destinationv1.FileFormat_Parquet:
		return "parquet"
	case *destinationv1.FileFormat_Json:
		return "json"
	case *destinationv1.FileFormat_Ndjson:
		return "ndjson"
	case *destinationv1.FileFormat_Delimited:
		switch f.Delimited.GetDelimiter() {
		case "", ",":
			return "csv"
		case "\t":
			return "tsv"
		case "|":
			return "psv"
		}
		return "delimited"
	}
	return ""
}
