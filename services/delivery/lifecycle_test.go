package delivery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
)

// The README's lifecycle table is the code's.
func TestLifecycleTableInREADME(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "<!-- lifecycle:begin")
	end := strings.Index(readme, "<!-- lifecycle:end -->")
	if start < 0 || end < start {
		t.Fatal("the README has no lifecycle table between <!-- lifecycle:begin ... --> and <!-- lifecycle:end -->")
	}
	head := readme[start:end]
	at := strings.Index(head, "-->\n") + 4
	got := head[at:]
	want := LifecycleTable()
	if got != want && os.Getenv("SLUICE_UPDATE_README") != "" {
		if err := os.WriteFile("../../README.md", []byte(readme[:start]+head[:at]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != want {
		t.Errorf("the README's lifecycle table differs from the code's; run SLUICE_UPDATE_README=1 go test -run TestLifecycleTableInREADME ./services/delivery/, or paste this between the markers:\n%s", want)
	}
}

// Every phase's stored shape is recognised as that phase, and no two
// phases share one.
func TestPhasesAreDistinct(t *testing.T) {
	seen := map[string]phase{}
	for _, p := range phaseOrder {
		sh := shapes[p]
		for _, in := range sh.inputs {
			d := &deliveryv1.Delivery{State: sh.state, StagedInput: &deliveryv1.StagedInput{State: in}}
			if got := phaseOf(d); got != p {
				t.Errorf("%s with input %s reads as %s, want %s", sh.state, in, got, p)
			}
			key := sh.state.String() + "/" + in.String()
			if other, ok := seen[key]; ok {
				t.Errorf("%s and %s share %s", other, p, key)
			}
			seen[key] = p
		}
	}
}

// move walks every allowed move from every phase, refuses every other
// one, refuses a delivery that is not where the mover expects, and keeps
// the workflow's state with the delivery's.
func TestMoveWalksEveryTransition(t *testing.T) {
	b := newBundle(t)
	ctx := context.Background()
	// A subscription to every event, so that each move's events are
	// written as its outbox (or, for a refused move, are not).
	if _, err := b.s.store.Subscriptions.Create(ctx, production, &deliveryv1.Subscription{Name: production + "/subscriptions/all",
		EventTypes: []deliveryv1.EventType{deliveryv1.EventType_EVENT_TYPE_DELIVERY_SUCCEEDED, deliveryv1.EventType_EVENT_TYPE_DELIVERY_FAILED,
			deliveryv1.EventType_EVENT_TYPE_DELIVERY_RESOLVED},
		Target: &deliveryv1.Subscription_Webhook{Webhook: &deliveryv1.Webhook{Url: "https://hooks.example.com/sluice"}}}); err != nil {
		t.Fatal(err)
	}
	eventsWritten := func(t *testing.T, delivery string) []deliveryv1.EventType {
		t.Helper()
		evs, err := b.s.store.Events.Find(ctx, 10, "delivery = ?", delivery)
		if err != nil {
			t.Fatal(err)
		}
		var types []deliveryv1.EventType
		for _, ev := range evs {
			types = append(types, ev.GetType())
			if len(ev.GetSends()) != 1 || ev.GetSends()[0].GetState() != deliveryv1.EventSendState_EVENT_SEND_STATE_PENDING {
				t.Errorf("event %s: sends %v", ev.GetName(), ev.GetSends())
			}
		}
		slices.Sort(types)
		return types
	}
	for _, from := range phaseOrder {
		for _, to := range phaseOrder {
			t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
				d := b.stored(t, from)
				c := change{}
				if sh := shapes[to]; !inputFits(d.GetStagedInput().GetState(), sh) {
					c.input = &deliveryv1.StagedInput{State: sh.inputs[0]}
				}
				if to == phaseFailed || to == phaseFailedKept {
					c.err = &deliveryv1.DeliveryError{Reason: "TRANSIENT", Message: "test"}
				}
				got, _, err := b.s.move(ctx, d.GetName(), []phase{from}, to, c)
				if !allowed(from, to) {
					if err == nil {
						t.Fatalf("moved from %s to %s, which the lifecycle does not hold", from, to)
					}
					if again, _ := b.s.store.Deliveries.Get(ctx, d.GetName()); phaseOf(again) != from {
						t.Fatalf("a refused move changed the delivery to %s", phaseOf(again))
					}
					if got := eventsWritten(t, d.GetName()); len(got) != 0 {
						t.Fatalf("a refused move wrote events %v", got)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if phaseOf(got) != to {
					t.Fatalf("stored %s, want %s", phaseOf(got), to)
				}
				want := slices.Sorted(slices.Values(eventsOf(from, to)))
				if got := eventsWritten(t, d.GetName()); !slices.Equal(got, want) {
					t.Errorf("events written %v, want %v", got, want)
				}
				w, err := b.s.store.Workflows.Get(ctx, d.GetWorkflow())
				if err != nil {
					t.Fatal(err)
				}
				if w.GetState() != shapes[to].workflow {
					t.Errorf("workflow %s, want %s", w.GetState(), shapes[to].workflow)
				}
				if final := !shapes[to].running && to != phaseInterrupted; final != (got.GetEndTime() != nil) {
					t.Errorf("end time %v for %s", got.GetEndTime(), to)
				}
			})
		}
	}
	t.Run("from another phase than expected", func(t *testing.T) {
		d := b.stored(t, phaseSucceeded)
		_, _, err := b.s.move(ctx, d.GetName(), []phase{phaseFailedKept}, phaseResolving, change{})
		var wp *wrongPhase
		if !errors.As(err, &wp) || wp.at != phaseSucceeded {
			t.Fatalf("got %v, want a wrongPhase at succeeded", err)
		}
	})
	t.Run("an input that does not fit the phase", func(t *testing.T) {
		d := b.stored(t, phaseUploading)
		_, _, err := b.s.move(ctx, d.GetName(), []phase{phaseUploading}, phaseFailedKept,
			change{input: &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED}})
		if err == nil {
			t.Fatal("a failed delivery said to keep its input was stored with its input deleted")
		}
	})
}

func inputFits(in deliveryv1.StagedInputState, sh shape) bool {
	for _, s := range sh.inputs {
		if s == in {
			return true
		}
	}
	return false
}

// stored stores a delivery in phase p, with its workflow, as begin does.
func (b *bundle) stored(t *testing.T, p phase) *deliveryv1.Delivery {
	t.Helper()
	ctx := context.Background()
	sh := shapes[p]
	d := &deliveryv1.Delivery{Name: production + "/deliveries/" + newID(timeNow()), Destination: b.dest.GetName(), State: sh.state,
		StagedInput: &deliveryv1.StagedInput{State: sh.inputs[0]}, Progress: &deliveryv1.DeliveryProgress{}, CreateTime: timestamppb.Now()}
	d.Workflow = d.GetName() + workflowLeaf
	w := newWorkflow(d)
	w.State = sh.workflow
	d, err := b.s.store.Deliveries.Create(ctx, production, d, b.s.store.Workflows.Creating(production, w))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
