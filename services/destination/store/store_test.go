package store_test

import (
	"context"
	"fmt"
	"testing"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/resourcestore/resourcestoretest"
	"github.com/sluicehq/sluice/pkg/testenv"
	"github.com/sluicehq/sluice/services/destination/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestConformance(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			resourcestoretest.Run(t, resourcestoretest.Fixture[*destinationv1.Destination]{
				Open: func(t *testing.T) *resourcestore.Table[*destinationv1.Destination] {
					s, err := store.Open(context.Background(), b.DSN(t))
					if err != nil {
						t.Fatalf("open store: %v", err)
					}
					t.Cleanup(func() { s.Close() })
					return s.Destinations
				},
				New: func(name string) *destinationv1.Destination {
					return &destinationv1.Destination{
						Name: name, Credential: "tenants/a/environments/production/credentials/c", Prefix: "exports/",
						Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}},
						Tags:   map[string]string{"team": "growth"},
					}
				},
				Change: func(d *destinationv1.Destination) { d.Prefix += "more/" },
			})
		})
	}
}

// Destinations are found by their credential, kept in step on update.
func TestFilterByCredential(t *testing.T) {
	ctx := context.Background()
	const parent = "tenants/a/environments/production"
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			s, err := store.Open(ctx, b.DSN(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i, cred := range []string{"c1", "c2", "c1"} {
				d := &destinationv1.Destination{Name: fmt.Sprintf("%s/destinations/d%d", parent, i), Credential: parent + "/credentials/" + cred}
				if _, err := s.Destinations.Create(ctx, parent, d); err != nil {
					t.Fatal(err)
				}
			}
			count := func(cred string) int {
				got, _, err := s.Destinations.List(ctx, parent, "", 10, resourcestore.Where{Column: store.CredentialColumn, Value: parent + "/credentials/" + cred})
				if err != nil {
					t.Fatal(err)
				}
				return len(got)
			}
			if count("c1") != 2 || count("c2") != 1 {
				t.Fatalf("c1: %d, c2: %d; want 2 and 1", count("c1"), count("c2"))
			}
			if _, err := s.Destinations.Update(ctx, parent+"/destinations/d1", "", func(d *destinationv1.Destination) error {
				d.Credential = parent + "/credentials/c1"
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if count("c1") != 3 || count("c2") != 0 {
				t.Fatalf("after moving d1: c1: %d, c2: %d; want 3 and 0", count("c1"), count("c2"))
			}
			if _, _, err := s.Destinations.List(ctx, parent, "", 10, resourcestore.Where{Column: "bucket", Value: "x"}); err == nil {
				t.Fatal("filtering on an undeclared column was accepted")
			}
		})
	}
}
