package filename_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/filename"
)

// 2026-03-08 09:30:05.123456789 UTC: 01:30 in Los Angeles, on the day US
// daylight saving time begins there (at 02:00 local).
var when = time.Date(2026, time.March, 8, 9, 30, 5, 123456789, time.UTC)

func TestRender(t *testing.T) {
	tests := []struct {
		template string
		values   filename.Values
		want     string
	}{
		{"C360_{{now|local:'America/Los_Angeles'|format:'MM-dd-yyyy'}}.csv.gz", filename.Values{Now: when}, "C360_03-08-2026.csv.gz"},
		{"customer_360/{{now|next_day|format:'yyyy/MM/dd'}}/Customer_360.tsv.gz", filename.Values{Now: when}, "customer_360/2026/03/09/Customer_360.tsv.gz"},
		{"{{now|local:'America/Los_Angeles'|format:'yyyy-MM-dd HH:mm:ss.SSS a z Z'}}", filename.Values{Now: when}, "2026-03-08 01:30:05.123 AM PST -0800"},
		// An hour later the zone has moved to daylight time.
		{"{{now|local:'America/Los_Angeles'|format:'HH:mm z ZZ'}}", filename.Values{Now: when.Add(time.Hour)}, "03:30 PDT -07:00"},
		{"{{now|format:'yy M d H h m s EEE EEEE MMM MMMM'}}", filename.Values{Now: when}, "26 3 8 9 9 30 5 Sun Sunday Mar March"},
		{"{{now|format:'yyyy-MM-dd''T''HHmm'}}", filename.Values{Now: when}, "2026-03-08T0930"},
		{"{{now|format:'yyyy''''MM'}}", filename.Values{Now: when}, "2026'03"},
		{"{{ now | utc | format:'hh a' }}", filename.Values{Now: when.Add(4 * time.Hour)}, "01 PM"},
		{"{{now|next_day|next_day|format:'dd'}}", filename.Values{Now: when}, "10"},
		{"{{output_name}}_{{file_number|pad:4}}.parquet", filename.Values{OutputName: "audience", FileNumber: 7}, "audience_0007.parquet"},
		{"part-{{file_number}}", filename.Values{FileNumber: 12345}, "part-12345"},
		{"plain/name.csv", filename.Values{}, "plain/name.csv"},
		{"", filename.Values{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.template, func(t *testing.T) {
			tmpl, err := filename.Parse(tt.template)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := tmpl.Render(tt.values); got != tt.want {
				t.Fatalf("Render = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseErrorsSayWhereAndWhy(t *testing.T) {
	tests := []struct {
		template string
		offset   int
		reason   string
	}{
		{"a_{{now|format:'yyyy'", 2, "never closed"},
		{"a}}b", 1, "without an opening"},
		{"{{ }}", 2, "empty"},
		{"{{today|format:'yyyy'}}", 2, `unknown value "today"`},
		{"{{now}}", 2, "now needs a format"},
		{"{{now|format:'yyyy-QQ'}}", 6, `"Q" is not a pattern letter`},
		{"{{now|format:'yyy'}}", 6, `"yyy" is not a valid run`},
		{"{{now|format:yyyy}}", 6, "quoted pattern"},
		{"{{now|local:'Mars/Olympus'|format:'yyyy'}}", 6, "unknown time zone"},
		{"{{now|format:'yyyy'|format:'MM'}}", 20, "twice"},
		{"{{now|pad:3|format:'yyyy'}}", 6, "not a filter of now"},
		{"{{file_number|pad:0}}", 14, "width from 1 to 12"},
		{"{{output_name|next_day}}", 14, "not a filter of output_name"},
		{"{{now|format:'it''s}}", 17, "never closed"},
		{"x{{now{{", 1, "never closed"},
		{"{{now|format:'yyyy'{{x}}", 19, "inside"},
		{strings.Repeat("a", 1025), 1024, "at most 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.template, func(t *testing.T) {
			_, err := filename.Parse(tt.template)
			var pe *filename.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse = %v, want a *filename.Error", err)
			}
			if pe.Offset != tt.offset || !strings.Contains(pe.Reason, tt.reason) {
				t.Fatalf("Parse = %v (offset %d), want offset %d and %q", err, pe.Offset, tt.offset, tt.reason)
			}
		})
	}
}

func TestUsesFileNumber(t *testing.T) {
	a, _ := filename.Parse("x_{{file_number}}.csv")
	b, _ := filename.Parse("x_{{now|format:'yyyy'}}.csv")
	if !a.UsesFileNumber() || b.UsesFileNumber() {
		t.Fatal("UsesFileNumber is wrong")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"C360_{{now|local:'America/Los_Angeles'|format:'MM-dd-yyyy'}}.csv.gz",
		"{{output_name}}_{{file_number|pad:4}}",
		"{{now|format:'yyyy''T''HH'}}", "{{", "}}", "{{now|format:''''}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := filename.Parse(s)
		if err != nil {
			var pe *filename.Error
			if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > len(s) {
				t.Fatalf("Parse(%q) = %v: an error must say where, inside the template", s, err)
			}
			return
		}
		out := tmpl.Render(filename.Values{Now: when, FileNumber: 3, OutputName: "out"})
		if !strings.Contains(s, "{{") && out != s {
			t.Fatalf("a template without '{{' rendered %q from %q", out, s)
		}
	})
}
