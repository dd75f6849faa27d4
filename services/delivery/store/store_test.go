package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/lease"
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
			t.Run("OneDeliveryPerIdempotencyKey", func(t *testing.T) { oneDeliveryPerKey(t, open(t, b.DSN(t))) })
			t.Run("ListByDestinationAndState", func(t *testing.T) { listByDestinationAndState(t, open(t, b.DSN(t))) })
			t.Run("LeasedWrites", func(t *testing.T) { leasedWrites(t, open(t, b.DSN(t))) })
			t.Run("RecordedWrites", func(t *testing.T) { recordedWrites(t, open(t, b.DSN(t))) })
			t.Run("HeldStaging", func(t *testing.T) { heldStaging(t, open(t, b.DSN(t))) })
			t.Run("SharedKeys", func(t *testing.T) { sharedKeys(t, open(t, b.DSN(t))) })
			t.Run("Outbox", func(t *testing.T) { outbox(t, open(t, b.DSN(t))) })
			t.Run("subscriptions", func(t *testing.T) {
				resourcestoretest.Run(t, resourcestoretest.Fixture[*deliveryv1.Subscription]{
					Open: func(t *testing.T) *resourcestore.Table[*deliveryv1.Subscription] {
						return open(t, b.DSN(t)).Subscriptions
					},
					New: func(name string) *deliveryv1.Subscription {
						return &deliveryv1.Subscription{Name: name, EventTypes: []deliveryv1.EventType{deliveryv1.EventType_EVENT_TYPE_DELIVERY_SUCCEEDED}}
					},
					Change: func(x *deliveryv1.Subscription) { x.Paused = !x.Paused },
				})
			})
			t.Run("events", func(t *testing.T) {
				resourcestoretest.Run(t, resourcestoretest.Fixture[*deliveryv1.Event]{
					Open: func(t *testing.T) *resourcestore.Table[*deliveryv1.Event] { return open(t, b.DSN(t)).Events },
					New: func(name string) *deliveryv1.Event {
						return &deliveryv1.Event{Name: name, Type: deliveryv1.EventType_EVENT_TYPE_DELIVERY_FAILED}
					},
					Change: func(e *deliveryv1.Event) { e.Sends = append(e.Sends, &deliveryv1.EventSend{Subscription: "s"}) },
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

const parent = "tenants/t/environments/production"

func delivery(id, dest, key string, state deliveryv1.DeliveryState) *deliveryv1.Delivery {
	return &deliveryv1.Delivery{Name: parent + "/deliveries/" + id, Destination: parent + "/destinations/" + dest, IdempotencyKey: key, State: state}
}

func oneDeliveryPerKey(t *testing.T, s *store.Store) {
	ctx := context.Background()
	running := deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING
	for _, d := range []*deliveryv1.Delivery{
		delivery("a", "d1", "k", running),
		delivery("b", "d1", "", running), // no key: never collides
		delivery("c", "d1", "", running),
		delivery("d", "d2", "k", running), // same key, other destination
	} {
		if _, err := s.Deliveries.Create(ctx, parent, d); err != nil {
			t.Fatalf("create %s: %v", d.GetName(), err)
		}
	}
	_, err := s.Deliveries.Create(ctx, parent, delivery("e", "d1", "k", running))
	if !errors.Is(err, apierror.ErrAlreadyExists) {
		t.Fatalf("second delivery with key k to d1: got %v, want ErrAlreadyExists", err)
	}
	got, _, err := s.Deliveries.List(ctx, parent, "", 10, resourcestore.Where{Column: store.IdempotencyColumn, Value: store.IdempotencyKey(parent+"/destinations/d1", "k")})
	if err != nil || len(got) != 1 || got[0].GetName() != parent+"/deliveries/a" {
		t.Fatalf("find by key: %v, %v", got, err)
	}
}

func listByDestinationAndState(t *testing.T, s *store.Store) {
	ctx := context.Background()
	ok, failed := deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED, deliveryv1.DeliveryState_DELIVERY_STATE_FAILED
	for _, d := range []*deliveryv1.Delivery{
		delivery("a", "d1", "", ok), delivery("b", "d1", "", failed), delivery("c", "d2", "", failed), delivery("d", "d1", "", ok),
	} {
		if _, err := s.Deliveries.Create(ctx, parent, d); err != nil {
			t.Fatal(err)
		}
	}
	// The state column follows updates.
	if _, err := s.Deliveries.Update(ctx, parent+"/deliveries/d", "", func(d *deliveryv1.Delivery) error {
		d.State = failed
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Deliveries.ListDescending(ctx, parent, "", 10,
		resourcestore.Where{Column: store.DestinationColumn, Value: parent + "/destinations/d1"},
		resourcestore.Where{Column: store.StateColumn, Value: int32(failed)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range got {
		names = append(names, d.GetName()[len(parent)+len("/deliveries/"):])
	}
	if strings.Join(names, ",") != "d,b" {
		t.Fatalf("failed deliveries to d1, newest first: got %v, want [d b]", names)
	}
}

// leasedWrites: a delivery is created with its lease in one transaction,
// and once another holder claims it, the first holder's writes (its
// records, its delivery) are refused while the successor's go through.
func leasedWrites(t *testing.T, s *store.Store) {
	ctx := context.Background()
	mine := delivery("a", "d1", "", deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING)
	first := s.Work("host-1", 200*time.Millisecond).Take(lease.Work{ID: "delivery:" + mine.GetName(), Kind: "delivery", Subject: mine.GetName()})
	if _, err := s.Deliveries.Create(ctx, parent, mine, first.Hold); err != nil {
		t.Fatal(err)
	}
	_, stop := first.Keep(ctx)
	stop() // its heartbeat stops: a pause, a partition
	var next *lease.Lease
	for deadline := time.Now().Add(10 * time.Second); next == nil && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		if next, err = s.Work("host-2", time.Minute).Claim(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if next == nil || next.Subject != mine.GetName() || next.Kind != "delivery" {
		t.Fatalf("claimed %+v, want the delivery", next)
	}
	late, stopLate := first.Keep(ctx)
	defer stopLate()
	if err := s.RecordWrite(late, mine.GetName(), store.Write{Bucket: "b", Key: "late"}); !errors.Is(err, lease.ErrLost) {
		t.Errorf("the first holder records a write: %v, want ErrLost", err)
	}
	if _, err := s.Deliveries.Update(late, mine.GetName(), "", func(d *deliveryv1.Delivery) error {
		d.State = deliveryv1.DeliveryState_DELIVERY_STATE_FAILED
		return nil
	}); !errors.Is(err, lease.ErrLost) {
		t.Errorf("the first holder ends the delivery: %v, want ErrLost", err)
	}
	ctx, stopNext := next.Keep(ctx)
	defer stopNext()
	for _, w := range []store.Write{{Bucket: "b", Key: "k2"}, {Bucket: "b", Key: "k1"}, {Bucket: "b", Key: "k2", UploadID: "u2"}} {
		if err := s.RecordWrite(ctx, mine.GetName(), w); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := s.Writes(ctx, mine.GetName())
	if err != nil || len(ws) != 2 || ws[0].Key != "k1" || ws[1].UploadID != "u2" {
		t.Fatalf("writes %+v %v", ws, err)
	}
	// Several records in one call: in order, a later one of a key
	// replacing the earlier, and fenced like one.
	if err := s.RecordWrite(ctx, mine.GetName(), store.Write{Bucket: "b", Key: "k3"}, store.Write{Bucket: "b", Key: "k3", Landed: &store.Landed{Bytes: 7}},
		store.Write{Bucket: "b", Key: "k4"}); err != nil {
		t.Fatal(err)
	}
	if ws, err := s.Writes(ctx, mine.GetName()); err != nil || len(ws) != 4 || ws[2].Key != "k3" || ws[2].Landed == nil || ws[2].Landed.Bytes != 7 || ws[3].Key != "k4" {
		t.Fatalf("writes after a group %+v %v", ws, err)
	}
	// The first holder's context: refused by the fence, or already ended
	// by its keeper once it saw the lease go; either way nothing lands.
	if err := s.RecordWrite(late, mine.GetName(), store.Write{Bucket: "b", Key: "k5"}, store.Write{Bucket: "b", Key: "k6"}); !errors.Is(err, lease.ErrLost) && !errors.Is(err, context.Canceled) {
		t.Errorf("the first holder records a group: %v, want ErrLost", err)
	}
	if ws, _ := s.Writes(ctx, mine.GetName()); len(ws) != 4 {
		t.Errorf("a refused group landed: %+v", ws)
	}
	if err := s.ForgetWrites(ctx, mine.GetName()); err != nil {
		t.Fatal(err)
	}
	if ws, _ := s.Writes(ctx, mine.GetName()); len(ws) != 0 {
		t.Fatalf("writes after forget: %+v", ws)
	}
}

// recordedWrites: the sweeper's view of every record, with what became of
// its delivery (state, destination, and whether work runs it), and an
// upload cleared only while it is still the one recorded.
func recordedWrites(t *testing.T, s *store.Store) {
	ctx := context.Background()
	running := delivery("run", "d1", "", deliveryv1.DeliveryState_DELIVERY_STATE_UPLOADING)
	l := s.Work("host-1", time.Minute).Take(lease.Work{ID: "delivery:" + running.GetName(), Kind: "delivery", Subject: running.GetName()})
	if _, err := s.Deliveries.Create(ctx, parent, running, l.Hold); err != nil {
		t.Fatal(err)
	}
	failed := delivery("failed", "d2", "", deliveryv1.DeliveryState_DELIVERY_STATE_FAILED)
	if _, err := s.Deliveries.Create(ctx, parent, failed); err != nil {
		t.Fatal(err)
	}
	held, stop := l.Keep(ctx)
	defer stop()
	if err := s.RecordWrite(held, running.GetName(), store.Write{Bucket: "b", Key: "r", UploadID: "u1"}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []store.Write{{Bucket: "b", Key: "f1", UploadID: "u2"}, {Bucket: "b", Key: "f2"}} {
		if err := s.RecordWrite(ctx, failed.GetName(), w); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordWrite(ctx, parent+"/deliveries/gone", store.Write{Bucket: "b", Key: "g"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.RecordedWrites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range all {
		if time.Since(w.Recorded) > time.Minute || w.Recorded.After(time.Now()) {
			t.Errorf("%s recorded at %v", w.Key, w.Recorded)
		}
		got = append(got, fmt.Sprintf("%s:%s:%s:%v:%v", w.Key, w.UploadID, strings.TrimPrefix(w.Destination, parent+"/destinations/"), w.State, w.Running))
	}
	want := "f1:u2:d2:DELIVERY_STATE_FAILED:false f2::d2:DELIVERY_STATE_FAILED:false g:::DELIVERY_STATE_UNSPECIFIED:false r:u1:d1:DELIVERY_STATE_UPLOADING:true"
	if strings.Join(got, " ") != want {
		t.Fatalf("recorded writes:\n got %v\nwant %v", strings.Join(got, " "), want)
	}
	if err := s.ClearUpload(ctx, failed.GetName(), "f1", "other"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearUpload(ctx, failed.GetName(), "f2", ""); err != nil {
		t.Fatal(err)
	}
	if ws, _ := s.Writes(ctx, failed.GetName()); len(ws) != 2 || ws[0].UploadID != "u2" {
		t.Fatalf("clearing another upload changed the record: %+v", ws)
	}
	if err := s.ClearUpload(ctx, failed.GetName(), "f1", "u2"); err != nil {
		t.Fatal(err)
	}
	if ws, _ := s.Writes(ctx, failed.GetName()); len(ws) != 2 || ws[0].UploadID != "" || ws[0].Key != "f1" {
		t.Fatalf("after clearing f1's upload: %+v", ws)
	}
}

// heldStaging: a tenant's kept input is the bytes of its deliveries that
// stopped with their input held or interrupted, and no other tenant's.
func heldStaging(t *testing.T, s *store.Store) {
	ctx := context.Background()
	held := func(id, tenant string, state deliveryv1.StagedInputState, bytes int64) {
		p := "tenants/" + tenant + "/environments/production"
		d := &deliveryv1.Delivery{Name: p + "/deliveries/" + id, State: deliveryv1.DeliveryState_DELIVERY_STATE_FAILED,
			StagedInput: &deliveryv1.StagedInput{State: state, Bytes: bytes}}
		if _, err := s.Deliveries.Create(ctx, p, d); err != nil {
			t.Fatal(err)
		}
	}
	held("a", "acme", deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD, 100)
	held("b", "acme", deliveryv1.StagedInputState_STAGED_INPUT_STATE_INTERRUPTED, 20)
	held("c", "acme", deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED, 5000)
	held("d", "acmecorp", deliveryv1.StagedInputState_STAGED_INPUT_STATE_HELD, 7) // a tenant whose id starts alike
	for tenant, want := range map[string]int64{"acme": 120, "acmecorp": 7, "none": 0} {
		if got, err := s.HeldStaging(ctx, tenant); err != nil || got != want {
			t.Errorf("HeldStaging(%s) = %d, %v; want %d", tenant, got, err, want)
		}
	}
	// Read in the transaction that creates a delivery, as Deliver does:
	// what was held before it.
	var inTx int64
	p := "tenants/acme/environments/production"
	if _, err := s.Deliveries.Create(ctx, p, &deliveryv1.Delivery{Name: p + "/deliveries/e", State: deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING,
		StagedInput: &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_RECEIVING}}, s.ReadingHeldStaging("acme", &inTx)); err != nil {
		t.Fatal(err)
	}
	if inTx != 120 {
		t.Errorf("ReadingHeldStaging(acme) = %d; want 120", inTx)
	}
	// Every Deliver asks: it reads the index of the few deliveries that
	// hold input, not every delivery stored.
	plan, err := store.HeldStagingPlan(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "deliveries_holding_staging") {
		t.Errorf("HeldStaging's query does not use the deliveries_holding_staging index; plan:\n%s", plan)
	}
}

// sharedKeys: a key is made once, 32 random bytes, and every later ask
// (another replica's too) answers the same.
func sharedKeys(t *testing.T, s *store.Store) {
	ctx := context.Background()
	a, err := s.Key(ctx, "page-tokens")
	if err != nil || len(a) != 32 {
		t.Fatalf("Key: %x, %v", a, err)
	}
	b, err := s.Key(ctx, "page-tokens")
	if err != nil || string(a) != string(b) {
		t.Fatalf("asked again: %x, %v; want %x", b, err, a)
	}
	if c, err := s.Key(ctx, "other"); err != nil || string(c) == string(a) {
		t.Fatalf("another name: %x, %v", c, err)
	}
}

// outbox: subscriptions are found in the writing transaction by
// destination and pause; events are due by their earliest pending send;
// secrets are kept apart and go with their subscription.
func outbox(t *testing.T, s *store.Store) {
	ctx := context.Background()
	sub := func(id, dest string, paused bool) {
		t.Helper()
		if _, err := s.Subscriptions.Create(ctx, parent, &deliveryv1.Subscription{Name: parent + "/subscriptions/" + id, Destination: dest, Paused: paused},
			s.SettingSecret(parent+"/subscriptions/"+id, []byte("sealed-"+id))); err != nil {
			t.Fatal(err)
		}
	}
	sub("all", "", false)
	sub("d1", parent+"/destinations/d1", false)
	sub("d2", parent+"/destinations/d2", false)
	sub("paused", "", true)
	var found []string
	_, err := s.Deliveries.Create(ctx, parent, delivery("x", parent+"/destinations/d1", "", deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING), func(ctx context.Context, tx *sql.Tx) error {
		subs, err := s.SubscribersIn(ctx, tx, parent, parent+"/destinations/d1")
		for _, x := range subs {
			found = append(found, x.GetName())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{parent + "/subscriptions/all", parent + "/subscriptions/d1"}; !slices.Equal(found, want) {
		t.Fatalf("subscribers of d1: %v, want %v", found, want)
	}
	now := time.Now()
	pending := func(at time.Time) *deliveryv1.EventSend {
		return &deliveryv1.EventSend{State: deliveryv1.EventSendState_EVENT_SEND_STATE_PENDING, NextAttemptTime: timestamppb.New(at)}
	}
	for id, sends := range map[string][]*deliveryv1.EventSend{
		"e-due":    {pending(now.Add(time.Hour)), pending(now.Add(-time.Second))},
		"e-later":  {pending(now.Add(time.Minute))},
		"e-sent":   {{State: deliveryv1.EventSendState_EVENT_SEND_STATE_SENT}},
		"e-gaveup": {{State: deliveryv1.EventSendState_EVENT_SEND_STATE_GAVE_UP}},
	} {
		if _, err := s.Events.Create(ctx, parent, &deliveryv1.Event{Name: parent + "/events/" + id, Sends: sends}); err != nil {
			t.Fatal(err)
		}
	}
	due, err := s.DueEvents(ctx, now, 10)
	if err != nil || len(due) != 1 || due[0].GetName() != parent+"/events/e-due" {
		t.Fatalf("due events: %v %v", due, err)
	}
	next, err := s.NextDue(ctx)
	if err != nil || next.Sub(now.Add(-time.Second)).Abs() > time.Millisecond {
		t.Fatalf("next due %v (%v), want a second ago", next, err)
	}
	// Sent, the event is no longer due.
	if _, err := s.Events.Update(ctx, parent+"/events/e-due", "", func(e *deliveryv1.Event) error {
		for _, x := range e.GetSends() {
			x.State = deliveryv1.EventSendState_EVENT_SEND_STATE_SENT
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.DueEvents(ctx, now.Add(2*time.Minute), 10); len(due) != 1 || due[0].GetName() != parent+"/events/e-later" {
		t.Fatalf("due two minutes on: %v", due)
	}
	if sealed, err := s.Secret(ctx, parent+"/subscriptions/d1"); err != nil || string(sealed) != "sealed-d1" {
		t.Fatalf("secret: %q %v", sealed, err)
	}
	if err := s.Subscriptions.Delete(ctx, parent+"/subscriptions/d1", "", s.ForgettingSecret(parent+"/subscriptions/d1")); err != nil {
		t.Fatal(err)
	}
	if sealed, err := s.Secret(ctx, parent+"/subscriptions/d1"); err != nil || sealed != nil {
		t.Fatalf("a deleted subscription's secret: %q %v", sealed, err)
	}
}

// BenchmarkSmallDelivery runs a small delivery's store work, 16 at a time:
// create it with its workflow, record its objects, move it twice, and
// store its success with its records forgotten.
func BenchmarkSmallDelivery(b *testing.B) {
	for _, be := range testenv.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			s, err := store.Open(context.Background(), be.DSN(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			ctx := context.Background()
			p := "tenants/acme/environments/production"
			var n atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					name := fmt.Sprintf("%s/deliveries/d%d", p, n.Add(1))
					d := &deliveryv1.Delivery{Name: name, State: deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING, Workflow: name + "/workflow"}
					if _, err := s.Deliveries.Create(ctx, p, d, s.Workflows.Creating(p, &deliveryv1.Workflow{Name: name + "/workflow"})); err != nil {
						b.Fatal(err)
					}
					if _, err := s.HeldStaging(ctx, "acme"); err != nil {
						b.Fatal(err)
					}
					if err := s.RecordWrite(ctx, name, store.Write{Bucket: "b", Key: name + ".ndjson"}, store.Write{Bucket: "b", Key: name + ".DONE"}); err != nil {
						b.Fatal(err)
					}
					for _, st := range []deliveryv1.DeliveryState{deliveryv1.DeliveryState_DELIVERY_STATE_UPLOADING, deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED} {
						var also []resourcestore.Also
						if st == deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED {
							also = append(also, s.ForgettingWrites(name))
						}
						if _, err := s.Deliveries.Update(ctx, name, "", func(d *deliveryv1.Delivery) error { d.State = st; return nil }, also...); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		})
	}
}
