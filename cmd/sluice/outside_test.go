package main

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/deliverclient"
)

// A split by size as small as 1 MB (#22: the minimum was 5 MiB): every
// file but the last is about that size, each a single PUT, and the files
// hold every row.
func TestSplitByOneMegabyte(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	dest := e.destination(t, "small-files", &destinationv1.Destination{Format: csvFormat(), Split: &destinationv1.Split{MaxBytes: 1_000_000}})
	d, err := deliverclient.Deliver(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"},
		reader(t, customerBatches(t, 30_000, 5000)), deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	files := 0
	for _, obj := range d.GetObjects() {
		if obj.GetKind() != "data" {
			continue
		}
		files++
		rows += obj.GetRows()
		if obj.GetParts() != 1 || obj.GetBytes() > 1_100_000 {
			t.Errorf("%s: %d bytes in %d parts, want about 1 MB in one", obj.GetKey(), obj.GetBytes(), obj.GetParts())
		}
		b := e.checkObject(t, obj)
		if int64(len(b)) != obj.GetBytes() {
			t.Errorf("%s: read %d bytes, answered %d", obj.GetKey(), len(b), obj.GetBytes())
		}
	}
	if rows != 30_000 || files < 3 {
		t.Fatalf("%d rows in %d files, want 30000 rows in several", rows, files)
	}
}
