package delivery

import (
	"slices"
	"testing"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
)

// Each way a delivery ends sends its event once; nothing else does.
func TestEventsOfEachMove(t *testing.T) {
	var (
		ok       = deliveryv1.EventType_EVENT_TYPE_DELIVERY_SUCCEEDED
		fail     = deliveryv1.EventType_EVENT_TYPE_DELIVERY_FAILED
		resolved = deliveryv1.EventType_EVENT_TYPE_DELIVERY_RESOLVED
	)
	want := map[[2]phase][]deliveryv1.EventType{
		{phaseUploading, phaseSucceeded}:     {ok},
		{phaseResolving, phaseSucceeded}:     {ok, resolved},
		{phaseReceiving, phaseFailedKept}:    {fail},
		{phaseReceiving, phaseFailed}:        {fail},
		{phaseInterrupted, phaseFailed}:      {fail}, // the resume window ended
		{phaseUploading, phaseFailedKept}:    {fail},
		{phaseUploading, phaseFailed}:        {fail},
		{phaseResolving, phaseFailedKept}:    {fail}, // a resolution that failed again
		{phaseResolving, phaseFailed}:        {fail},
		{phaseFailedKept, phaseFailed}:       nil, // its kept input expired: no new failure
		{phaseUploading, phaseCancelled}:     nil,
		{phaseFailedKept, phaseResolving}:    nil,
		{phaseUploading, phaseUploading}:     nil,
		{phaseResolving, phaseResolving}:     nil,
		{phaseFailedKept, phaseCancelled}:    nil,
		{phaseCancelledKept, phaseResolving}: nil,
	}
	for _, e := range lifecycle {
		got := eventsOf(e.from, e.to)
		w, listed := want[[2]phase{e.from, e.to}]
		if !listed {
			w = nil
		}
		if !slices.Equal(got, w) {
			t.Errorf("%s to %s: events %v, want %v", e.from, e.to, got, w)
		}
	}
}
