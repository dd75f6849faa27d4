package store_test

import (
	"context"
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
