package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/deliverclient"
)

// scrape reads url's Prometheus text, as Prometheus would.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v", url, resp.Status, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, body)
	}
	return fams, string(body)
}

// sum adds up the samples of a family whose labels include labels
// (counters and gauges; histograms by their count).
func sum(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var total float64
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// After a delivery that lands and one that fails, /metrics counts both by
// format and outcome (the failure by its reason), and the rows, bytes in
// and out and parts equal what the two deliveries answer; the pool's size
// and the credential service's mints are there too. No label carries a
// resource name.
func TestMetricsCountDeliveries(t *testing.T) {
	w := startWorkflows(t, func(c *serveConfig) {
		c.MetricsAddr = "127.0.0.1:0"
		c.Delivery.PartSize = 5 << 20
	})
	if w.r.metrics == "" {
		t.Fatal("serve did not say where /metrics is")
	}
	w.mayUseAnyBucket(t)
	ctx := context.Background()
	recs := customerBatches(t, 30_000, 3000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	ok := w.destination(t, "landed", &destinationv1.Destination{Format: csvFormat()})
	landed, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: ok.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	if err != nil {
		t.Fatal(err)
	}
	typo := w.destination(t, "typo", &destinationv1.Destination{Format: csvFormat(), BucketOverride: w.bucket + "-typo"})
	failed := w.failedDelivery(t, typo.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)

	fams, text := scrape(t, w.r.metrics)
	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	check("deliveries started", sum(fams, "sluice_delivery_started_total", "sluice_format", "csv"), 2)
	check("deliveries succeeded", sum(fams, "sluice_delivery_completed_total", "sluice_format", "csv", "sluice_outcome", "succeeded"), 1)
	check("deliveries failed with BUCKET_NOT_FOUND", sum(fams, "sluice_delivery_completed_total", "sluice_outcome", "failed", "error_type", "BUCKET_NOT_FOUND"), 1)
	check("delivery durations", sum(fams, "sluice_delivery_duration_seconds"), 2)
	check("deliveries running", sum(fams, "sluice_delivery_active"), 0)
	both := func(f func(*deliveryv1.DeliveryProgress) int64) float64 {
		return float64(f(landed.GetProgress()) + f(failed.GetProgress()))
	}
	check("rows", sum(fams, "sluice_delivery_rows_total"), both((*deliveryv1.DeliveryProgress).GetRows))
	check("bytes in", sum(fams, "sluice_delivery_io_bytes_total", "sluice_io_direction", "in"), both((*deliveryv1.DeliveryProgress).GetBytesIn))
	check("bytes out", sum(fams, "sluice_delivery_io_bytes_total", "sluice_io_direction", "out"), both((*deliveryv1.DeliveryProgress).GetBytesOut))
	check("parts", sum(fams, "sluice_delivery_parts_total"), both((*deliveryv1.DeliveryProgress).GetParts))
	if landed.GetProgress().GetRows() != 30_000 || landed.GetProgress().GetBytesOut() == 0 {
		t.Errorf("the landed delivery's progress: %v", landed.GetProgress())
	}
	check("part buffer pool", sum(fams, "sluice_delivery_part_buffers_limit_bytes"), float64(8*(5<<20)))
	check("part buffers held between deliveries", sum(fams, "sluice_delivery_part_buffers_used_bytes"), 0)
	if n := sum(fams, "sluice_credential_access_mints_total", "sluice_outcome", "succeeded"); n < 2 {
		t.Errorf("credential access mints: %v, want at least the two deliveries'", n)
	}
	// On disk, staged input carries its chunks' framing (length, CRC32C).
	if n, kept := sum(fams, "sluice_delivery_staging_used_bytes"), float64(failed.GetStagedInput().GetBytes()); n < kept || n > kept+64<<10 {
		t.Errorf("staging holds %v bytes, the failed delivery keeps %v", n, kept)
	}
	for _, leak := range []string{"tenants/", "acme", w.bucket, w.key} {
		if strings.Contains(text, leak) {
			t.Errorf("/metrics carries %q", leak)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}
