package arrowfmt

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The hand-made UTC timestamp text is exactly what the layout writes, for
// every fraction width, zoned or not, across years 0 to 9999 and beyond
// (where it defers to the layout).
func TestAppendQuotedUTCMatchesLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Date(-20, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()/1000, time.Date(10020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()/1000
	for range 200_000 {
		ts := time.UnixMicro(lo + r.Int64N(hi-lo)).Add(time.Duration(r.IntN(1000))).UTC()
		for _, frac := range []int{0, 4, 7, 10} {
			for _, zoned := range []bool{false, true} {
				layout := "2006-01-02T15:04:05" + ".000000000"[:frac]
				if zoned {
					layout += "Z07:00"
				}
				want := string(appendQuotedTime(nil, ts, layout))
				if got := string(appendQuotedUTC(nil, ts, frac, zoned)); got != want {
					t.Fatalf("%v, fraction %d, zoned %v: %s, want %s", ts, frac, zoned, got, want)
				}
			}
		}
	}
}
