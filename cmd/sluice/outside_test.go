package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
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

// A page token names only a delivery the caller was given (#22: tokens
// given to a restricted user named deliveries it may not see), and paging
// still returns every delivery it may see, once, newest first.
func TestPageTokensNameNothingHidden(t *testing.T) {
	e := startDelivering(t, nil)
	ctx := context.Background()
	open := e.destination(t, "open", &destinationv1.Destination{Format: csvFormat()})
	hidden := e.destination(t, "hidden", &destinationv1.Destination{Format: csvFormat(), Access: &destinationv1.Access{AdminOnly: true}})
	visible := map[string]bool{}
	secret := map[string]bool{}
	for i, dest := range []*destinationv1.Destination{hidden, open, hidden, hidden, open, hidden, open, hidden} {
		d, err := deliverclient.Deliver(ctx, e.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: fmt.Sprint("out-", i)},
			reader(t, customerBatches(t, 10, 10)), deliverclient.Options{CallOptions: []grpc.CallOption{e.admin}})
		if err != nil {
			t.Fatal(err)
		}
		if dest == hidden {
			secret[d.GetName()] = true
		} else {
			visible[d.GetName()] = true
		}
	}
	user := e.r.token("acme")
	for _, size := range []int32{1, 2, 3} {
		var got []string
		token := ""
		for range 20 {
			page, err := e.delivs.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: production, PageSize: size, PageToken: token}, user)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range page.GetDeliveries() {
				got = append(got, d.GetName())
			}
			token = page.GetNextPageToken()
			if token == "" {
				break
			}
			raw, err := base64.RawURLEncoding.DecodeString(token)
			if err != nil {
				t.Fatal(err)
			}
			for name := range secret {
				if strings.Contains(string(raw), deliveryIDOf(name)) {
					t.Fatalf("page size %d: a token names a delivery the caller may not see", size)
				}
			}
		}
		if len(got) != len(visible) || !sort.SliceIsSorted(got, func(i, j int) bool { return got[i] > got[j] }) {
			t.Fatalf("page size %d: %d deliveries %v, want the %d visible, newest first", size, len(got), got, len(visible))
		}
		for _, n := range got {
			if !visible[n] {
				t.Fatalf("page size %d: listed %s", size, n)
			}
		}
	}
}

func deliveryIDOf(name string) string { return name[strings.LastIndex(name, "/")+1:] }
