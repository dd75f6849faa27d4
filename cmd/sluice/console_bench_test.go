package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
)

// BenchmarkConsoleWithAThousandDeliveries renders the console's pages
// against the real services on SQLite with 1,000 deliveries stored (999
// delivered to MinIO, one failed): the whole path a page takes, the
// console's gRPC calls as the user and the services' store reads
// included. It reports each page's p95 beside its mean.
func BenchmarkConsoleWithAThousandDeliveries(b *testing.B) {
	e := startDelivering(b, nil)
	ctx := context.Background()
	dest := e.destination(b, "audience", &destinationv1.Destination{Format: csvFormat()})
	recs := customerBatches(b, 20, 20)
	stream := ipcBytes(b, recs[0].Schema(), recs...)
	deliver := func(to string, i int) error {
		_, err := deliverclient.DeliverStream(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: to, OutputName: fmt.Sprintf("audience-%04d", i)},
			bytes.NewReader(stream), deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
		return err
	}
	work := make(chan int)
	errs := make(chan error, 999)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if err := deliver(dest.GetName(), i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range 999 {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	missing := e.destination(b, "missing", &destinationv1.Destination{Format: csvFormat(), BucketOverride: "no-such-bucket-" + e.bucket})
	failed := apierror.FromStatus(deliver(missing.GetName(), 999))
	if failed == nil || failed.Metadata["delivery"] == "" {
		b.Fatalf("the delivery to a missing bucket: %v", failed)
	}
	id := deliveryIDOf(failed.Metadata["delivery"])

	br := newBrowser(b, e.r.console)
	br.devLogin("ada@acme.test", auth.PolicyAdministrator)
	for _, page := range []struct{ name, path string }{{"deliveries", "/deliveries"}, {"workflows", "/workflows"},
		{"delivery", "/deliveries/" + id}, {"workflow-resolutions", "/workflows/" + id + "?resolutions"}} {
		path := page.path
		b.Run(page.name, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				code, body := br.get(path)
				took = append(took, time.Since(start))
				if code != http.StatusOK {
					b.Fatalf("%s: %d %.500s", path, code, body)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)*95/100].Microseconds())/1000, "p95-ms")
		})
	}
}
