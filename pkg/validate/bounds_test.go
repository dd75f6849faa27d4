package validate_test

import (
	"strings"
	"testing"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/validate"
)

// Checking a 4 MiB slice of an Arrow stream costs a length, not a
// formatting of its bytes: it once took most of a delivery's CPU.
func TestBoundsOfLargeBytesAllocateNothingPerByte(t *testing.T) {
	req := &deliveryv1.DeliverRequest{Payload: &deliveryv1.DeliverRequest_ArrowIpc{ArrowIpc: make([]byte, 4<<20)}}
	allocs := testing.AllocsPerRun(10, func() {
		var v validate.Violations
		validate.Bounds(&v, req)
		if v.Len() != 0 {
			t.Fatal("a 4 MiB arrow_ipc slice was refused")
		}
	})
	if allocs > 16 {
		t.Fatalf("Bounds allocated %.0f times for one bytes field", allocs)
	}
}

func TestBoundsRefuseLongFields(t *testing.T) {
	var v validate.Violations
	validate.Bounds(&v, &destinationv1.Destination{Prefix: strings.Repeat("p", validate.MaxStringBytes+1), Description: strings.Repeat("d", 8<<10)})
	if v.Len() != 1 {
		t.Fatalf("%d violations, want one (the prefix; descriptions may hold 8 KiB)", v.Len())
	}
}
