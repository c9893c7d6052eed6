package codec

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/modelserver/modelserver/tensor"
)

// Scalar is a numpy scalar (np.float32(1.5), np.int64(3), np.bool_(True)),
// which msgpack_numpy sends as {b"nd": False, b"type", b"data"}. The tensor
// is 0-d. (np.float64 is a Python float and travels as a msgpack float.)
type Scalar struct{ tensor.Tensor }

// Complex is a Python complex, sent as {b"complex": True, b"data": repr}.
type Complex complex128

// NaiveLocation is the location of a time.Time that stands for a naive
// Python datetime (one without tzinfo): such a datetime decodes to a time in
// NaiveLocation, and a time in NaiveLocation encodes without a UTC offset.
// Any other location encodes its offset, "Z" for a zero offset.
var NaiveLocation = time.FixedZone("naive", 0)

// Date is a Python datetime.date.
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

// TimeOfDay is a naive Python datetime.time (tz-aware times cannot be sent:
// Truss's encoder refuses them).
type TimeOfDay struct {
	Hour, Minute, Second, Microsecond int
}

// Timedelta is a Python datetime.timedelta. Decoded values are normalised as
// Python normalises them: 0 <= Seconds < 86400, 0 <= Microseconds < 10^6 and
// |Days| <= 999999999.
type Timedelta struct {
	Days, Seconds, Microseconds int64
}

// Decimal is a Python decimal.Decimal in the canonical text form that
// str(Decimal(s)) gives ("1.50", "1E+3", "-Infinity", "NaN").
type Decimal string

const (
	maxTimedeltaDays = 999999999
	usPerSecond      = 1000000
	secondsPerDay    = 86400
)

// String returns the date in ISO form, as date.isoformat does.
func (d Date) String() string {
	return string(appendDate(nil, d.Year, int(d.Month), d.Day))
}

// String returns the time in ISO form, as time.isoformat does.
func (t TimeOfDay) String() string {
	return string(appendClock(nil, t.Hour, t.Minute, t.Second, t.Microsecond))
}

func appendDate(b []byte, y, m, d int) []byte {
	b = appendPadded(b, y, 4)
	b = append(b, '-')
	b = appendPadded(b, m, 2)
	b = append(b, '-')
	return appendPadded(b, d, 2)
}

// appendClock writes HH:MM:SS, plus .ffffff when us is not zero.
func appendClock(b []byte, h, m, s, us int) []byte {
	b = appendPadded(b, h, 2)
	b = append(b, ':')
	b = appendPadded(b, m, 2)
	b = append(b, ':')
	b = appendPadded(b, s, 2)
	if us != 0 {
		b = append(b, '.')
		b = appendPadded(b, us, 6)
	}
	return b
}

func appendPadded(b []byte, v, width int) []byte {
	var buf [20]byte
	s := strconv.AppendInt(buf[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

func (d Date) validate() error {
	if d.Year < 1 || d.Year > 9999 || d.Month < 1 || d.Month > 12 || d.Day < 1 || d.Day > daysIn(d.Year, d.Month) {
		return fmt.Errorf("date %04d-%02d-%02d is out of range", d.Year, int(d.Month), d.Day)
	}
	return nil
}

func (t TimeOfDay) validate() error {
	if t.Hour < 0 || t.Hour > 23 || t.Minute < 0 || t.Minute > 59 || t.Second < 0 || t.Second > 59 ||
		t.Microsecond < 0 || t.Microsecond >= usPerSecond {
		return fmt.Errorf("time %02d:%02d:%02d.%06d is out of range", t.Hour, t.Minute, t.Second, t.Microsecond)
	}
	return nil
}

func daysIn(year int, m time.Month) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// digitsAt parses exactly n ASCII digits at the start of s.
func digitsAt(s string, n int) (int, bool) {
	if len(s) < n {
		return 0, false
	}
	v := 0
	for i := range n {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseISODate accepts YYYY-MM-DD, the form date.isoformat writes.
func parseISODate(s string) (Date, error) {
	y, ok1 := digitsAt(s, 4)
	m, ok2 := digitsAt(s[min(5, len(s)):], 2)
	d, ok3 := digitsAt(s[min(8, len(s)):], 2)
	if !ok1 || !ok2 || !ok3 || len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return Date{}, fmt.Errorf("invalid isoformat date %q", s)
	}
	date := Date{y, time.Month(m), d}
	return date, date.validate()
}

// parseISOTime accepts HH[:MM[:SS[.f...]]] without an offset; fraction
// digits past the sixth are dropped, as Python 3.11 does.
func parseISOTime(s string) (TimeOfDay, error) {
	bad := fmt.Errorf("invalid isoformat time %q", s)
	var f [3]int
	rest := s
	for i := range f {
		v, ok := digitsAt(rest, 2)
		if !ok {
			return TimeOfDay{}, bad
		}
		f[i], rest = v, rest[2:]
		if rest == "" || rest[0] != ':' || i == 2 {
			break
		}
		rest = rest[1:]
	}
	us := 0
	if rest != "" {
		if rest[0] != '.' || len(rest) < 2 {
			return TimeOfDay{}, bad
		}
		for i, c := range []byte(rest[1:]) {
			if c < '0' || c > '9' {
				return TimeOfDay{}, bad
			}
			if i < 6 {
				us = us*10 + int(c-'0')
			}
		}
		for n := len(rest) - 1; n < 6; n++ {
			us *= 10
		}
	}
	t := TimeOfDay{f[0], f[1], f[2], us}
	return t, t.validate()
}

// parseISODateTime accepts what datetime.isoformat writes (and Truss's "Z"
// for UTC): YYYY-MM-DD[(T| )HH[:MM[:SS[.f...]]][Z|±HH:MM[:SS]]]. A value
// without an offset is naive and lands in NaiveLocation.
func parseISODateTime(s string) (time.Time, error) {
	if len(s) < 10 {
		return time.Time{}, fmt.Errorf("invalid isoformat datetime %q", s)
	}
	d, err := parseISODate(s[:10])
	if err != nil {
		return time.Time{}, err
	}
	var tod TimeOfDay
	loc := NaiveLocation
	if rest := s[10:]; rest != "" {
		if rest[0] != 'T' && rest[0] != ' ' {
			return time.Time{}, fmt.Errorf("invalid isoformat datetime %q", s)
		}
		clock, offset := rest[1:], ""
		if i := strings.IndexAny(clock, "Z+-"); i >= 0 {
			clock, offset = clock[:i], clock[i:]
		}
		if tod, err = parseISOTime(clock); err != nil {
			return time.Time{}, err
		}
		if offset != "" {
			if loc, err = parseUTCOffset(offset); err != nil {
				return time.Time{}, err
			}
		}
	}
	return time.Date(d.Year, d.Month, d.Day, tod.Hour, tod.Minute, tod.Second, tod.Microsecond*1000, loc), nil
}

// parseUTCOffset accepts Z and ±HH:MM[:SS[.ffffff]] with a whole number of
// seconds below 24 hours; a zero offset is UTC, as Python makes it.
func parseUTCOffset(s string) (*time.Location, error) {
	if s == "Z" {
		return time.UTC, nil
	}
	bad := fmt.Errorf("invalid UTC offset %q", s)
	t, err := parseISOTime(s[1:])
	if err != nil || len(s) < 6 || s[3] != ':' {
		return nil, bad
	}
	if t.Microsecond != 0 {
		return nil, fmt.Errorf("UTC offset %q has a fraction of a second", s)
	}
	secs := t.Hour*3600 + t.Minute*60 + t.Second
	if s[0] == '-' {
		secs = -secs
	}
	if secs == 0 {
		return time.UTC, nil
	}
	return time.FixedZone("", secs), nil
}

// formatISODateTime writes t as Truss's encoder does: isoformat with
// microseconds (sub-microsecond digits are dropped), the offset when t is
// not naive, and "Z" for a zero offset.
func formatISODateTime(t time.Time) (string, error) {
	if y := t.Year(); y < 1 || y > 9999 {
		return "", fmt.Errorf("datetime year %d is outside Python's 1..9999", y)
	}
	b := make([]byte, 0, 32)
	b = appendDate(b, t.Year(), int(t.Month()), t.Day())
	b = append(b, 'T')
	b = appendClock(b, t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1000)
	if t.Location() == NaiveLocation {
		return string(b), nil
	}
	_, off := t.Zone()
	if off == 0 {
		return string(append(b, 'Z')), nil
	}
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	b = append(b, sign)
	b = appendPadded(b, off/3600, 2)
	b = append(b, ':')
	b = appendPadded(b, off/60%60, 2)
	if off%60 != 0 {
		b = append(b, ':')
		b = appendPadded(b, off%60, 2)
	}
	return string(b), nil
}

var errTimedeltaRange = errors.New("timedelta out of range: |days| must be <= 999999999")

// normalizeTimedelta carries microseconds into seconds and seconds into days
// with floor division, as timedelta(days, seconds, microseconds) does.
func normalizeTimedelta(days, seconds, micros int64) (Timedelta, error) {
	secCarry, us := floorDivMod(micros, usPerSecond)
	dayCarry1, sec := floorDivMod(seconds, secondsPerDay)
	// |secCarry| < 10^13, so sec+secCarry cannot overflow.
	dayCarry2, sec := floorDivMod(sec+secCarry, secondsPerDay)
	d, ok1 := addInt64(days, dayCarry1)
	d, ok2 := addInt64(d, dayCarry2)
	if !ok1 || !ok2 || d < -maxTimedeltaDays || d > maxTimedeltaDays {
		return Timedelta{}, errTimedeltaRange
	}
	return Timedelta{d, sec, us}, nil
}

// floorDivMod returns Python's (a // b, a % b) for b > 0.
func floorDivMod(a, b int64) (q, r int64) {
	q, r = a/b, a%b
	if r < 0 {
		q, r = q-1, r+b
	}
	return q, r
}

func addInt64(a, b int64) (int64, bool) {
	s := a + b
	return s, (s > a) == (b > 0)
}

// parsePyComplex parses what Python's complex(str) accepts: optional
// parentheses and surrounding whitespace around <float>, <float>j,
// <float><signed float>j, <float><sign>j, <sign>j or j.
func parsePyComplex(s string) (complex128, error) {
	bad := fmt.Errorf("invalid complex literal %q", s)
	t := trimPySpace(s)
	if strings.HasPrefix(t, "(") {
		if !strings.HasSuffix(t, ")") {
			return 0, bad
		}
		t = trimPySpace(t[1 : len(t)-1])
	}
	var re, im float64
	if n := pyFloatPrefix(t); n > 0 {
		x := parsePyFloat(t[:n])
		switch t = t[n:]; {
		case t == "":
			re = x
		case t == "j" || t == "J":
			im = x
		case t[0] == '+' || t[0] == '-':
			re = x
			m := pyFloatPrefix(t)
			if m == 0 { // <float><sign>j
				im, m = signOne(t[0]), 1
			} else {
				im = parsePyFloat(t[:m])
			}
			if t[m:] != "j" && t[m:] != "J" {
				return 0, bad
			}
		default:
			return 0, bad
		}
		return complex(re, im), nil
	}
	switch t {
	case "j", "J", "+j", "+J":
		return complex(0, 1), nil
	case "-j", "-J":
		return complex(0, -1), nil
	}
	return 0, bad
}

func signOne(c byte) float64 {
	if c == '-' {
		return -1
	}
	return 1
}

func trimPySpace(s string) string { return strings.Trim(s, " \t\n\r\f\v") }

// pyFloatPrefix returns the length of the longest prefix of s that CPython's
// float parser accepts: [sign] (digits [. digits] [e [sign] digits] | inf |
// infinity | nan), letters in any case; 0 if there is none.
func pyFloatPrefix(s string) int {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for _, w := range [...]string{"infinity", "inf", "nan"} {
		if len(s)-i >= len(w) && strings.EqualFold(s[i:i+len(w)], w) {
			return i + len(w)
		}
	}
	digits := 0
	for ; i < len(s) && isDigit(s[i]); i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && isDigit(s[i]); i++ {
			digits++
		}
	}
	if digits == 0 {
		return 0
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		if j < len(s) && isDigit(s[j]) {
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			i = j
		}
	}
	return i
}

// parsePyFloat converts a prefix accepted by pyFloatPrefix. Overflow gives
// ±Inf as in CPython; a signed NaN keeps its sign bit.
func parsePyFloat(s string) float64 {
	body := strings.TrimLeft(s, "+-")
	if strings.EqualFold(body, "nan") {
		return math.Copysign(pyNaN, signOne(s[0]))
	}
	f, _ := strconv.ParseFloat(s, 64) // the syntax is known to be valid; only range errors remain
	return f
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// formatPyComplex returns repr(complex): "2j" when the real part is +0,
// otherwise "(re±imj)"; each part is a float repr without ".0", and the sign
// of a NaN part is not shown.
func formatPyComplex(c complex128) string {
	re, im := real(c), imag(c)
	b := make([]byte, 0, 64)
	if re == 0 && !math.Signbit(re) {
		b = appendPyFloat(b, pyNaNAbs(im), 64, false)
		return string(append(b, 'j'))
	}
	b = append(b, '(')
	b = appendPyFloat(b, pyNaNAbs(re), 64, false)
	im = pyNaNAbs(im)
	if !math.Signbit(im) {
		b = append(b, '+')
	}
	b = appendPyFloat(b, im, 64, false)
	return string(append(b, "j)"...))
}

// pyNaNAbs drops the sign of a NaN, which CPython's repr ignores.
func pyNaNAbs(f float64) float64 {
	if math.IsNaN(f) {
		return math.Abs(f)
	}
	return f
}

// canonicalDecimal validates s as decimal.Decimal(s) does and returns
// str(Decimal(s)), so that a decoded value re-encodes as Python would.
func canonicalDecimal(s string) (Decimal, error) {
	bad := fmt.Errorf("invalid decimal literal %q", s)
	t := strings.TrimSpace(s)
	sign := ""
	if t != "" && (t[0] == '+' || t[0] == '-') {
		if t[0] == '-' {
			sign = "-"
		}
		t = t[1:]
	}
	lower := strings.ToLower(t)
	switch {
	case lower == "inf" || lower == "infinity":
		return Decimal(sign + "Infinity"), nil
	case strings.HasPrefix(lower, "nan") || strings.HasPrefix(lower, "snan"):
		name, payload := "NaN", lower[3:]
		if lower[0] == 's' {
			name, payload = "sNaN", lower[4:]
		}
		if !allDigits(payload) {
			return "", bad
		}
		return Decimal(sign + name + strings.TrimLeft(payload, "0")), nil
	}
	mant, expText, hasExp := strings.Cut(t, "e")
	if !hasExp {
		mant, expText, hasExp = strings.Cut(t, "E")
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if !allDigits(intPart) || !allDigits(frac) || intPart+frac == "" {
		return "", bad
	}
	var exp int64
	if hasExp {
		e, err := strconv.ParseInt(expText, 10, 64)
		// Bound the exponent so that the arithmetic below cannot overflow.
		if err != nil || e > math.MaxInt64/4 || e < math.MinInt64/4 {
			return "", bad
		}
		exp = e
	}
	coeff := strings.TrimLeft(intPart+frac, "0")
	if coeff == "" {
		coeff = "0"
	}
	return Decimal(sign + decimalSciString(coeff, exp-int64(len(frac)))), nil
}

// decimalSciString lays out coefficient digits and an exponent as
// Decimal.__str__ does (the "to-scientific-string" rule).
func decimalSciString(coeff string, exp int64) string {
	left := exp + int64(len(coeff))
	dot := int64(1)
	if exp <= 0 && left > -6 {
		dot = left
	}
	var b strings.Builder
	switch {
	case dot <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", int(-dot)))
		b.WriteString(coeff)
	case dot >= int64(len(coeff)):
		b.WriteString(coeff)
		b.WriteString(strings.Repeat("0", int(dot-int64(len(coeff)))))
	default:
		b.WriteString(coeff[:dot])
		b.WriteByte('.')
		b.WriteString(coeff[dot:])
	}
	if left != dot {
		fmt.Fprintf(&b, "E%+d", left-dot)
	}
	return b.String()
}

func allDigits(s string) bool {
	for i := range len(s) {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// parsePyUUID accepts what uuid.UUID(hex) accepts: 32 hex digits once
// "urn:", "uuid:", braces at the ends and every hyphen are removed.
func parsePyUUID(s string) (uuid.UUID, error) {
	h := strings.ReplaceAll(strings.ReplaceAll(s, "urn:", ""), "uuid:", "")
	h = strings.ReplaceAll(strings.Trim(h, "{}"), "-", "")
	var u uuid.UUID
	if len(h) != 32 {
		return u, fmt.Errorf("invalid UUID %q", s)
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("invalid UUID %q", s)
	}
	return u, nil
}
