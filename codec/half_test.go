package codec

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestFloat16RoundTripsEveryValue(t *testing.T) {
	for h := range 1 << 16 {
		f := float16ToFloat32(uint16(h))
		want := uint16(h)
		if f != f {
			want |= 0x200 // widening to float64 quiets a signalling NaN
		}
		if back := float64ToFloat16(float64(f)); back != want {
			t.Fatalf("float64ToFloat16(float16ToFloat32(%#04x) = %v) = %#04x", h, f, back)
		}
	}
}

func TestFloat16Values(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want uint16
	}{
		{0, 0x0000},
		{math.Copysign(0, -1), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65519.999, 0x7bff}, // below the midpoint: float32 would round it up onto the midpoint
		{65520, 0x7c00},
		{1e10, 0x7c00},
		{math.Inf(-1), 0xfc00},
		{0x1p-24, 0x0001},               // smallest subnormal
		{0x1p-25, 0x0000},               // tie between 0 and the smallest subnormal: even
		{0x1.8p-25, 0x0001},             // above the tie
		{0x1p-14, 0x0400},               // smallest normal
		{0x1p-14 - 0x1p-25, 0x0400},     // rounds up out of the subnormals
		{1 + 0x1p-11, 0x3c00},           // tie: even
		{1 + 3*0x1p-11, 0x3c02},         // tie: even (up)
		{1 + 0x1p-11 + 0x1p-40, 0x3c01}, // above the tie
		{0.1, 0x2e66},
		{math.NaN(), 0x7e00},
	} {
		if got := float64ToFloat16(tc.f); got != tc.want {
			t.Errorf("float64ToFloat16(%v) = %#04x, want %#04x", tc.f, got, tc.want)
		}
	}
	if got := float64ToFloat16(math.Float64frombits(0x7ff0000000000001)); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("float64ToFloat16(signalling NaN) = %#04x, want a NaN", got)
	}
}

// TestFloat64ToFloat16Nearest checks random values against the definition:
// no float16 is closer, and on a tie the mantissa is even.
func TestFloat64ToFloat16Nearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		f := math.Ldexp(rng.Float64()*2-1, rng.IntN(40)-26)
		h := float64ToFloat16(f)
		got := float64(float16ToFloat32(h))
		if math.IsInf(got, 0) {
			t.Fatalf("float64ToFloat16(%v) = Inf", f)
		}
		for _, n := range []uint16{h - 1, h + 1} {
			other := float64(float16ToFloat32(n))
			if n&0x7c00 == 0x7c00 || math.Signbit(other) != math.Signbit(got) && other != 0 {
				continue
			}
			d, od := math.Abs(f-got), math.Abs(f-other)
			if od < d || (od == d && h&1 == 1) {
				t.Fatalf("float64ToFloat16(%v) = %#04x (%v), but %#04x (%v) is nearer or even", f, h, got, n, other)
			}
		}
	}
}

func TestBFloat16(t *testing.T) {
	for b := range 1 << 16 {
		f := bfloat16ToFloat32(uint16(b))
		back := float32ToBFloat16(f)
		if f != f {
			if back != uint16(b)&0x8000|0x7fc0 {
				t.Fatalf("float32ToBFloat16(NaN %#04x) = %#04x, want the quiet NaN", b, back)
			}
			continue
		}
		if back != uint16(b) {
			t.Fatalf("float32ToBFloat16(bfloat16ToFloat32(%#04x)) = %#04x", b, back)
		}
	}
	for _, tc := range []struct {
		f    float64
		want uint16
	}{
		{1, 0x3f80},
		{1 + 0x1p-8, 0x3f80},           // tie: even
		{1 + 3*0x1p-8, 0x3f82},         // tie: even (up)
		{1 + 0x1p-8 + 0x1p-20, 0x3f81}, // above the tie
		{math.MaxFloat32, 0x7f80},      // rounds past the largest bfloat16
		{1e39, 0x7f80},
		{-0.1, 0xbdcd},
	} {
		if got := float64ToBFloat16(tc.f); got != tc.want {
			t.Errorf("float64ToBFloat16(%v) = %#04x, want %#04x", tc.f, got, tc.want)
		}
	}
}
