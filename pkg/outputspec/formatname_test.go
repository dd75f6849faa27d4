package outputspec

import (
	"testing"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
)

func TestFormatName(t *testing.T) {
	delimited := func(d string) *destinationv1.FileFormat {
		return &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Delimited{Delimited: &destinationv1.DelimitedFormat{Delimiter: d}}}
	}
	for want, f := range map[string]*destinationv1.FileFormat{
		"parquet":   {Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}},
		"json":      {Kind: &destinationv1.FileFormat_Json{Json: &destinationv1.JsonFormat{}}},
		"ndjson":    {Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}},
		"csv":       delimited(""),
		"tsv":       delimited("\t"),
		"psv":       delimited("|"),
		"delimited": delimited(";"),
		"":          nil,
	} {
		if got := FormatName(&destinationv1.Destination{Format: f}); got != want {
			t.Errorf("%v: %q, want %q", f, got, want)
		}
	}
}
