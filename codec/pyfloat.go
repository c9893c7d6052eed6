package codec

import (
	"math"
	"strconv"
)

// appendPyFloat appends f in CPython's repr layout, with the fewest digits
// that round-trip at bitSize (32 or 64): positional for 1e-4 <= |f| < 1e16,
// exponent form ("1e+16", "1.5e-07") otherwise, "nan", "inf" and "-inf" for
// the special values. dot0 appends ".0" to integral positional forms as
// float.__repr__ does; complex.__repr__ formats its parts without it.
func appendPyFloat(dst []byte, f float64, bitSize int, dot0 bool) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, "nan"...)
	case math.IsInf(f, 1):
		return append(dst, "inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-inf"...)
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, bitSize) // [-]d[.ddd]e±dd[d]
	if e[0] == '-' {
		dst = append(dst, '-')
		e = e[1:]
	}
	var digits [24]byte
	nd, i := 0, 0
	for ; e[i] != 'e'; i++ {
		if e[i] != '.' {
			digits[nd] = e[i]
			nd++
		}
	}
	expPart := e[i:] // "e+16"
	x := 0
	for _, c := range expPart[2:] {
		x = x*10 + int(c-'0')
	}
	if expPart[1] == '-' {
		x = -x
	}
	d := digits[:nd]
	// decpt is the position of the decimal point relative to the digits,
	// the quantity CPython's repr switches on.
	switch decpt := x + 1; {
	case decpt <= -4 || decpt > 16:
		dst = append(dst, d[0])
		if len(d) > 1 {
			dst = append(dst, '.')
			dst = append(dst, d[1:]...)
		}
		return append(dst, expPart...)
	case decpt <= 0:
		dst = append(dst, "0."...)
		for range -decpt {
			dst = append(dst, '0')
		}
		return append(dst, d...)
	case decpt >= len(d):
		dst = append(dst, d...)
		for range decpt - len(d) {
			dst = append(dst, '0')
		}
		if dot0 {
			dst = append(dst, ".0"...)
		}
		return dst
	default:
		dst = append(dst, d[:decpt]...)
		dst = append(dst, '.')
		return append(dst, d[decpt:]...)
	}
}
