package deliverclient_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/apache/arrow-go/v18/arrow/array"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// An internal service delivers a table it holds as Arrow record batches:
// any array.RecordReader (a query's result, a Parquet file's reader)
// streams with flat memory, progress is reported as batches go, and the
// answer says what landed. (Shown, not run: it needs a delivery service
// at SLUICE_DELIVERY_ADDR; cmd/sluice's tests run the same calls against
// a live one.)
func ExampleDeliver() {
	conn, err := grpc.NewClient(os.Getenv("SLUICE_DELIVERY_ADDR"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	var rows array.RecordReader = sampledata.NewCustomer360(nil, 1_000_000, 0, 1)
	defer rows.Release()
	d, err := deliverclient.Deliver(context.Background(), deliveryv1.NewDeliveryServiceClient(conn),
		&deliveryv1.DeliveryStart{
			Destination:    "tenants/acme/environments/production/destinations/c360",
			OutputName:     "c360",
			IdempotencyKey: "c360-2026-12-02", // the same key twice writes once
		}, rows, deliverclient.Options{
			Progress:    func(p deliverclient.Progress) { fmt.Fprintf(os.Stderr, "\r%d rows sent", p.Rows) },
			CallOptions: []grpc.CallOption{grpc.PerRPCCredentials(auth.BearerCredentials(os.Getenv("SLUICE_TOKEN")))},
		})
	if err != nil {
		log.Fatal(err) // apierror.FromStatus(err) reads its reason and field violations
	}
	for _, o := range d.GetObjects() {
		fmt.Printf("s3://%s/%s: %d rows, %d bytes, %s\n", d.GetBucket(), o.GetKey(), o.GetRows(), o.GetBytes(), o.GetChecksum())
	}
}
