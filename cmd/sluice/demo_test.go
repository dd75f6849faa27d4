package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The demo is the README's first command: it must run end to end and show
// what it claims.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	cfg := defaultServeConfig()
	cfg.DataDir = ""
	logs := &syncBuffer{}
	cfg.LogOutput = logs
	cfg.CredentialAddr, cfg.DestinationAddr, cfg.DeliveryAddr, cfg.ConsoleAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	picture := filepath.Join(t.TempDir(), "trace.png")
	if err := demo(context.Background(), &out, cfg, demoOptions{tracePNG: picture, rows: 100_000}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"wrote and read back",
		"sluice.delivery.v1.WorkflowService",
		"without a token:        Unauthenticated",
		"- page_size: must not be negative",
		"another tenant's data:  NotFound",
		"$ sluice credential create minio-exports",
		"bucket_region",
		"BUCKET_NOT_FOUND",
		"c360/C360_",
		"_2.csv.gz",
		"$ sluice destination create c360-csv --from-file",
		"multipart_upload",
		"$ sluice destination test c360-csv",
		"wrote 100000 generated customer rows",
		"$ sluice deliver ",
		"gunzipped; its first lines:",
		"customer_id,",
		"sent 100000 rows",
		"SUCCEEDED",
		"100000 rows, ",
		"c360/C360_",
		"ListDeliveries (state = SUCCEEDED): 1 delivery",
		"exit code 4: the delivery failed",
		"sluice: BUCKET_NOT_FOUND (",
		"Delivery to c360-typo failed",
		"resolution [fix-bucket-name]",
		"Correct the bucket name",
		"1. Open the AWS management console",
		"$ sluice workflow resolve ",
		"20000 rows, ",
		"services stopped gracefully",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("demo output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "FAILED") && !strings.Contains(got, "BUCKET_NOT_FOUND") {
		t.Errorf("a check failed for another cause than the misspelled bucket:\n%s", got)
	}
	for _, re := range []string{`step upload\s+FAILED`, `state\s+SUCCEEDED\s+run 2`} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("the demo's workflow lacks %s:\n%s", re, got)
		}
	}
	if !regexp.MustCompile(`secret set\s+true`).MatchString(got) {
		t.Errorf("the credential's secret is not set:\n%s", got)
	}
	// Every step says how long it took; the services' logs went to their
	// own place, not into the story.
	if n := strings.Count(got, "(step took "); n != 8 {
		t.Errorf("%d steps timed, want 8", n)
	}
	if strings.Contains(got, `{"time":`) || !strings.Contains(logs.String(), `"msg":"rpc"`) {
		t.Errorf("the services' logs are mixed into the story, or missing from their file")
	}
	// The delivery's trace, drawn: a PNG of its spans.
	f, err := os.Open(picture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() != 1400 || img.Bounds().Dy() < 90+19*15 { // 15 spans at least
		t.Errorf("the trace's picture: %v, %v", err, img.Bounds())
	}
	if !strings.Contains(got, "drew its trace") {
		t.Errorf("the demo does not say where the trace's picture is:\n%s", got)
	}
	if n := strings.Count(got, "SERVING"); n != 5 {
		t.Errorf("%d services SERVING, want 5", n)
	}
}
