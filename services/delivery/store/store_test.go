package store_test

import (
	"context"
	"testing"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/resourcestore/resourcestoretest"
	"github.com/sluicehq/sluice/pkg/testenv"
	"github.com/sluicehq/sluice/services/delivery/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func open(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("deliveries", func(t *testing.T) {
				resourcestoretest.Run(t, resourcestoretest.Fixture[*deliveryv1.Delivery]{
					Open: func(t *testing.T) *resourcestore.Table[*deliveryv1.Delivery] { return open(t, b.DSN(t)).Deliveries },
					New: func(name string) *deliveryv1.Delivery {
						return &deliveryv1.Delivery{Name: name, State: deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING}
					},
					Change: func(d *deliveryv1.Delivery) {
						d.Progress = &deliveryv1.DeliveryProgress{Rows: d.GetProgress().GetRows() + 1}
					},
				})
			})
			t.Run("workflows", func(t *testing.T) {
				resourcestoretest.Run(t, resourcestoretest.Fixture[*deliveryv1.Workflow]{
					Open: func(t *testing.T) *resourcestore.Table[*deliveryv1.Workflow] { return open(t, b.DSN(t)).Workflows },
					New: func(name string) *deliveryv1.Workflow {
						return &deliveryv1.Workflow{Name: name, State: deliveryv1.WorkflowState_WORKFLOW_STATE_RUNNING}
					},
					Change: func(w *deliveryv1.Workflow) {
						w.Steps = append(w.Steps, &deliveryv1.WorkflowStep{Step: "upload", State: deliveryv1.StepState_STEP_STATE_RUNNING})
					},
				})
			})
			t.Run("notifications", func(t *testing.T) {
				resourcestoretest.Run(t, resourcestoretest.Fixture[*deliveryv1.Notification]{
					Open: func(t *testing.T) *resourcestore.Table[*deliveryv1.Notification] {
						return open(t, b.DSN(t)).Notifications
					},
					New: func(name string) *deliveryv1.Notification {
						return &deliveryv1.Notification{Name: name, Severity: deliveryv1.Severity_SEVERITY_ERROR, Title: "Delivery failed"}
					},
					Change: func(n *deliveryv1.Notification) { n.Acknowledged = !n.Acknowledged },
				})
			})
		})
	}
}
