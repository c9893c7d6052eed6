package codec

import "math"

// Conversions between float64/float32 and the two 16-bit float formats.
// They are written here rather than taken from a library because JSON input
// must round exactly as numpy does: numpy casts a Python float (float64)
// straight to float16, and going through float32 first would round twice and
// differ in rare cases (65519.999 is 65504 in numpy, +Inf via float32).
// bfloat16, in contrast, is rounded via float32 by ml_dtypes, PyTorch and
// Eigen alike, so that is what float64ToBFloat16 does.

// float64ToFloat16 returns the float16 nearest to f, ties to even. A NaN
// keeps its sign and the top 10 bits of its payload, and stays a NaN.
func float64ToFloat16(f float64) uint16 {
	bits := math.Float64bits(f)
	sign := uint16(bits>>48) & 0x8000
	a := math.Abs(f)
	switch {
	case math.IsNaN(f):
		payload := uint16(bits>>42) & 0x3ff
		if payload == 0 {
			payload = 1
		}
		return sign | 0x7c00 | payload
	case a >= 65520: // the midpoint between MaxFloat16 (65504) and 2^16 rounds up (to even).
		return sign | 0x7c00
	case a < 0x1p-14: // zero or subnormal: a multiple of 2^-24.
		return sign | uint16(math.RoundToEven(a*0x1p24))
	}
	frac, exp := math.Frexp(a) // a = frac * 2^exp, frac in [0.5, 1)
	mant := math.RoundToEven(math.Ldexp(frac, 11))
	if mant == 2048 { // rounding carried into the exponent
		mant, exp = 1024, exp+1
	}
	return sign | uint16(exp-1+15)<<10 | (uint16(mant) - 1024)
}

// float16ToFloat32 widens a float16 exactly, keeping NaN payloads.
func float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0: // zero or subnormal: mant * 2^-24, exact in float32.
		return math.Float32frombits(math.Float32bits(float32(mant)*0x1p-24) | sign)
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp-15+127)<<23 | mant<<13)
}

// float32ToBFloat16 returns the bfloat16 nearest to f, ties to even. NaN
// becomes the quiet NaN of the same sign, as in Eigen.
func float32ToBFloat16(f float32) uint16 {
	bits := math.Float32bits(f)
	if f != f {
		return uint16(bits>>16)&0x8000 | 0x7fc0
	}
	bits += 0x7fff + (bits>>16)&1
	return uint16(bits >> 16)
}

// float64ToBFloat16 rounds f to bfloat16 through float32, as ml_dtypes and
// PyTorch do.
func float64ToBFloat16(f float64) uint16 { return float32ToBFloat16(float32(f)) }

// bfloat16ToFloat32 widens a bfloat16 exactly.
func bfloat16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }
