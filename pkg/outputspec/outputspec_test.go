package outputspec_test

import (
	"strings"
	"testing"
	"time"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/arrowfmt"
	"github.com/sluicehq/sluice/pkg/compression"
	"github.com/sluicehq/sluice/pkg/filename"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/outputspec"
)

func TestConfig(t *testing.T) {
	no := false
	values := filename.Values{Now: time.Date(2026, 3, 8, 9, 30, 0, 0, time.UTC), OutputName: "c360"}
	tsv := &destinationv1.Destination{
		Prefix: "exports/",
		Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{
			Delimiter: "\t", Header: &no, Escape: "\\", QuoteMode: destinationv1.QuoteMode_QUOTE_MODE_NON_NUMERIC,
			LineEnding: destinationv1.LineEnding_LINE_ENDING_CRLF, NullValue: "NULL",
		}}},
		Compression: &destinationv1.Compression{Kind: destinationv1.CompressionKind_COMPRESSION_KIND_ZIP, UseZip64: true},
		RowNumber:   &destinationv1.RowNumber{Enabled: true},
		Split:       &destinationv1.Split{MaxRows: 1000},
	}
	c, err := outputspec.Config(tsv, values)
	if err != nil {
		t.Fatal(err)
	}
	want := arrowfmt.DelimitedOptions{Delimiter: '\t', Header: false, Escape: '\\', Quote: arrowfmt.QuoteNonNumeric, CRLF: true, NullValue: "NULL", RowNumber: "row_number"}
	if c.Format != fileset.Delimited || c.Delimited != want || c.Compression != compression.Zip || !c.Zip64 || c.MaxRows != 1000 {
		t.Fatalf("config %+v", c)
	}
	if got := c.Key(2); got != "exports/c360_00002.tsv.zip" {
		t.Fatalf("default key %q: the default name ends with the compression's extension", got)
	}

	parquet := &destinationv1.Destination{Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{
		Codec: destinationv1.ParquetCodec_PARQUET_CODEC_ZSTD, RowGroupRows: 5000,
		DataPageVersion: destinationv1.ParquetDataPageVersion_PARQUET_DATA_PAGE_VERSION_2, Dictionary: destinationv1.ParquetDictionary_PARQUET_DICTIONARY_NEVER}}},
		FilenameTemplate: "{{output_name}}/{{now|format:'yyyy-MM-dd'}}/part-{{file_number}}"}
	c, err = outputspec.Config(parquet, values)
	if err != nil {
		t.Fatal(err)
	}
	if c.Parquet.Codec != arrowfmt.Zstd || c.Parquet.RowGroupRows != 5000 || c.Parquet.DataPage != arrowfmt.DataPageV2 || c.Parquet.Dictionary != arrowfmt.DictionaryNever || !c.ParquetExtension || c.Key(1) != "c360/2026-03-08/part-1.parquet" {
		t.Fatalf("parquet config %+v key %q", c.Parquet, c.Key(1))
	}
	if n := outputspec.WorstCaseKeyBytes(c); n <= 200 || n > 300 {
		t.Fatalf("worst case %d bytes", n)
	}
	parquet.FilenameTemplate = "{{now|format:'MMMM EEEE'}}"
	c, _ = outputspec.Config(parquet, values)
	if n := outputspec.WorstCaseKeyBytes(c); n != len("September Wednesday.parquet") {
		t.Fatalf("worst case of the longest names: %d", n)
	}
	if _, err := outputspec.Config(&destinationv1.Destination{}, values); err == nil || !strings.Contains(err.Error(), "format") {
		t.Fatalf("a destination without format: %v", err)
	}
}

// Default names end with the format's extension, then the compression's
// (#22); a template of the user's is kept as written.
func TestDefaultNamesEndWithTheCompressionsExtension(t *testing.T) {
	csv := &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{}}}
	ndjson := &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}
	for _, tc := range []struct {
		format   *destinationv1.FileFormat
		kind     destinationv1.CompressionKind
		template string
		want     string
	}{
		{csv, destinationv1.CompressionKind_COMPRESSION_KIND_NONE, "", "out_00001.csv"},
		{csv, destinationv1.CompressionKind_COMPRESSION_KIND_GZIP, "", "out_00001.csv.gz"},
		{csv, destinationv1.CompressionKind_COMPRESSION_KIND_ZIP, "", "out_00001.csv.zip"},
		{ndjson, destinationv1.CompressionKind_COMPRESSION_KIND_TAR, "", "out_00001.ndjson.tar"},
		{ndjson, destinationv1.CompressionKind_COMPRESSION_KIND_TGZ, "", "out_00001.ndjson.tgz"},
		{csv, destinationv1.CompressionKind_COMPRESSION_KIND_GZIP, "mine_{{file_number}}.csv", "mine_1.csv"},
	} {
		d := &destinationv1.Destination{Format: tc.format, Compression: &destinationv1.Compression{Kind: tc.kind}, FilenameTemplate: tc.template}
		c, err := outputspec.Config(d, filename.Values{OutputName: "out", Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Key(1); got != tc.want {
			t.Errorf("%v with %q: %q, want %q", tc.kind, tc.template, got, tc.want)
		}
	}
}

// The short form of partition fields reads what it writes, and refuses
// what it cannot read with the way to say it.
func TestPartitionByShortForm(t *testing.T) {
	fields, err := outputspec.ParsePartitionBy(" country , signup_date:day, customer_id:bucket:16,at:HOUR")
	if err != nil {
		t.Fatal(err)
	}
	if got := outputspec.FormatPartitionBy(fields); got != "country, signup_date:day, customer_id:bucket:16, at:hour" {
		t.Errorf("written back as %q", got)
	}
	for _, bad := range []string{"x:week", "x:bucket", "x:bucket:many", "x:day:3"} {
		if _, err := outputspec.ParsePartitionBy(bad); err == nil {
			t.Errorf("%q was read", bad)
		}
	}
	if fields, err := outputspec.ParsePartitionBy(" "); err != nil || len(fields) != 0 {
		t.Errorf("empty: %v %v", fields, err)
	}
}
