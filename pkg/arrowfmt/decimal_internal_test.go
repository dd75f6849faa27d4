package arrowfmt

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/decimal128"
)

// appendDecimal128 writes what decimal128's ToString does, on both sides of
// its int64 fast path, at every scale.
func TestAppendDecimal128MatchesToString(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []decimal128.Num{
		decimal128.FromI64(0), decimal128.FromI64(1), decimal128.FromI64(-1), decimal128.FromI64(7),
		decimal128.FromI64(math.MaxInt64), decimal128.FromI64(math.MinInt64),
		decimal128.New(0, 1<<63), decimal128.New(-1, 1<<63-1), // just past int64 either way
		decimal128.New(1, 0), decimal128.New(-2, 5), decimal128.MaxDecimal128, decimal128.MaxDecimal128.Negate(),
	}
	for range 2000 {
		v := r.Int64N(1 << uint(r.IntN(62)+1))
		if r.IntN(2) == 0 {
			v = -v
		}
		values = append(values, decimal128.FromI64(v))
	}
	for _, n := range values {
		for _, scale := range []int32{-5, -1, 0, 1, 2, 3, 9, 18, 19, 20, 25, 38} {
			want := n.ToString(scale)
			if got := string(appendDecimal128([]byte("x"), n, scale)); got != "x"+want {
				t.Fatalf("%v (high %d, low %d) at scale %d: %q, want %q", n.BigInt(), n.HighBits(), n.LowBits(), scale, got[1:], want)
			}
		}
	}
}
