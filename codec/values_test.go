package codec

import (
	"math"
	"strconv"
	"testing"
	"time"
)

// appendPyFloatCases hold CPython's repr of each value (float.__repr__,
// and with bitSize 32 the shortest float32 digits in the same layout).
var appendPyFloatCases = []struct {
	f       float64
	bitSize int
	want    string
}{
	{0, 64, "0.0"},
	{math.Copysign(0, -1), 64, "-0.0"},
	{1, 64, "1.0"},
	{-2.5, 64, "-2.5"},
	{0.1, 64, "0.1"},
	{1e-4, 64, "0.0001"},
	{1e-5, 64, "1e-05"},
	{1.5e-7, 64, "1.5e-07"},
	{123456.0, 64, "123456.0"},
	{1e6, 64, "1000000.0"},
	{1234567890123456.0, 64, "1234567890123456.0"},
	{1e16, 64, "1e+16"},
	{1.2345678901234568e+17, 64, "1.2345678901234568e+17"},
	{math.MaxFloat64, 64, "1.7976931348623157e+308"},
	{5e-324, 64, "5e-324"},
	{1e100, 64, "1e+100"},
	{math.NaN(), 64, "nan"},
	{math.Inf(1), 64, "inf"},
	{math.Inf(-1), 64, "-inf"},
	{float64(float32(0.1)), 32, "0.1"},
	{float64(float32(0.1)), 64, "0.10000000149011612"},
	{float64(float32(16777216)), 32, "16777216.0"},
	{float64(math.MaxFloat32), 32, "3.4028235e+38"},
	{float64(float32(1e-5)), 32, "1e-05"},
}

func TestAppendPyFloat(t *testing.T) {
	for _, tc := range appendPyFloatCases {
		if got := string(appendPyFloat(nil, tc.f, tc.bitSize, true)); got != tc.want {
			t.Errorf("appendPyFloat(%v, %d) = %q, want %q", tc.f, tc.bitSize, got, tc.want)
		}
	}
	if got := string(appendPyFloat([]byte("x="), 2, 64, false)); got != "x=2" {
		t.Errorf("appendPyFloat without dot0 = %q, want %q", got, "x=2")
	}
}

// pyComplexCases pair Python's complex(s) inputs with repr(complex(s)).
var pyComplexCases = []struct{ in, repr string }{
	{"(1+2j)", "(1+2j)"},
	{"1+2j", "(1+2j)"},
	{"  ( 1.5-2.25J ) ", "(1.5-2.25j)"},
	{"2j", "2j"},
	{"-2j", "-2j"},
	{"j", "1j"},
	{"-j", "-1j"},
	{"+J", "1j"},
	{"1-j", "(1-1j)"},
	{"1", "(1+0j)"},
	{"0", "0j"},
	{"-0", "(-0+0j)"},
	{"(-0+1j)", "(-0+1j)"},
	{"1e16j", "1e+16j"},
	{"(1e-05+1000000j)", "(1e-05+1000000j)"},
	{"(nan+nanj)", "(nan+nanj)"},
	{"-nan-nanj", "(nan+nanj)"},
	{"(inf-infj)", "(inf-infj)"},
	{"infinityj", "infj"},
	{"1e400", "(inf+0j)"},
	{".5+5.j", "(0.5+5j)"},
}

func TestPyComplex(t *testing.T) {
	for _, tc := range pyComplexCases {
		c, err := parsePyComplex(tc.in)
		if err != nil {
			t.Errorf("parsePyComplex(%q): %v", tc.in, err)
			continue
		}
		if got := formatPyComplex(c); got != tc.repr {
			t.Errorf("repr(complex(%q)) = %q, want %q", tc.in, got, tc.repr)
		}
	}
	// Python also takes PEP 515 underscores ("1_0"); Truss never writes them
	// and they are rejected here, like hex floats, which Python rejects too.
	for _, bad := range []string{"", "()", "(1+2j", "1+2", "1 + 2j", "jj", "1j+2", "1e", "0x1p3", "1_0", "nanx", "(1+2j))"} {
		if c, err := parsePyComplex(bad); err == nil {
			t.Errorf("parsePyComplex(%q) = %v, want an error", bad, c)
		}
	}
}

func TestCanonicalDecimal(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1.50", "1.50"},
		{"-0", "-0"},
		{"0.00", "0.00"},
		{"007", "7"},
		{"1e3", "1E+3"},
		{"1E-3", "0.001"},
		{"123.456e2", "12345.6"},
		{"0.000001", "0.000001"},
		{"0.0000001", "1E-7"},
		{"12345e-12", "1.2345E-8"},
		{"0e5", "0E+5"},
		{".5", "0.5"},
		{"5.", "5"},
		{"+Inf", "Infinity"},
		{"-infinity", "-Infinity"},
		{"nan", "NaN"},
		{"-sNaN0012", "-sNaN12"},
		{"\t42 ", "42"},
	} {
		got, err := canonicalDecimal(tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("canonicalDecimal(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
	// "1_000" is valid in Python (PEP 515) but never written by Truss: rejected.
	for _, bad := range []string{"", ".", "e5", "1e", "1e+", "1.2.3", "1_000", "infinit", "nan1.5", "--1", "0x10", "1e99999999999999999999"} {
		if got, err := canonicalDecimal(bad); err == nil {
			t.Errorf("canonicalDecimal(%q) = %q, want an error", bad, got)
		}
	}
}

func TestISOTimes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2024-02-29T23:59:58.123456", "2024-02-29T23:59:58.123456"},
		{"2024-02-29T23:59:58.000000", "2024-02-29T23:59:58"},
		{"2024-01-02T03:04:05.5+01:00", "2024-01-02T03:04:05.500000+01:00"},
		{"2024-01-02T03:04:05-23:59:59", "2024-01-02T03:04:05-23:59:59"},
		{"2024-01-02T03:04Z", "2024-01-02T03:04:00Z"},
	} {
		v, err := parseISODateTime(tc.in)
		if err != nil {
			t.Errorf("parseISODateTime(%q): %v", tc.in, err)
			continue
		}
		if got, err := formatISODateTime(v); err != nil || got != tc.want {
			t.Errorf("formatISODateTime(parseISODateTime(%q)) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "2024-1-02", "2024-01-02T", "2024-01-02T3:04", "2024-01-02T03:04:05.", "2024-13-01",
		"2024-01-02T03:04:05+24:00", "2024-01-02T03:04:05+0100", "2024-01-02T03:04:60", "2024-01-02T03:04:05Zjunk"} {
		if v, err := parseISODateTime(bad); err == nil {
			t.Errorf("parseISODateTime(%q) = %v, want an error", bad, v)
		}
	}
	if got := (Date{1, 2, 3}).String(); got != "0001-02-03" {
		t.Errorf("Date.String() = %q, want 0001-02-03", got)
	}
	if got := (TimeOfDay{1, 2, 3, 45}).String(); got != "01:02:03.000045" {
		t.Errorf("TimeOfDay.String() = %q, want 01:02:03.000045", got)
	}
	naive := time.Date(2024, 1, 2, 3, 4, 5, 0, NaiveLocation)
	if got, _ := formatISODateTime(naive); got != "2024-01-02T03:04:05" {
		t.Errorf("naive datetime = %q, want no offset", got)
	}
}

func TestNormalizeTimedelta(t *testing.T) {
	for _, tc := range []struct {
		in   [3]int64
		want Timedelta
	}{
		{[3]int64{0, 0, 0}, Timedelta{}},
		{[3]int64{0, -1, 0}, Timedelta{-1, 86399, 0}},
		{[3]int64{0, 0, -1}, Timedelta{-1, 86399, 999999}},
		{[3]int64{1, 86400 * 3, 2500000}, Timedelta{4, 2, 500000}},
		{[3]int64{-999999999, 0, 0}, Timedelta{-999999999, 0, 0}},
		{[3]int64{999999999, 86399, 999999}, Timedelta{999999999, 86399, 999999}},
		{[3]int64{0, math.MaxInt64, 0}, Timedelta{}}, // out of range
	} {
		got, err := normalizeTimedelta(tc.in[0], tc.in[1], tc.in[2])
		wantErr := tc.in[1] == math.MaxInt64
		if (err != nil) != wantErr || got != tc.want {
			t.Errorf("normalizeTimedelta(%v) = %v, %v, want %v (error: %v)", tc.in, got, err, tc.want, wantErr)
		}
	}
	for _, in := range [][3]int64{{math.MaxInt64, math.MaxInt64, math.MaxInt64}, {math.MinInt64, math.MinInt64, math.MinInt64},
		{999999999, 86400, 0}, {-999999999, 0, -1}} {
		if got, err := normalizeTimedelta(in[0], in[1], in[2]); err == nil {
			t.Errorf("normalizeTimedelta(%v) = %v, want a range error", in, got)
		}
	}
}

func TestParsePyUUID(t *testing.T) {
	const want = "12345678-1234-5678-1234-567812345678"
	for _, in := range []string{want, "{12345678123456781234567812345678}", "urn:uuid:" + want, "1234-5678-1234-5678-1234-5678-1234-5678", "12345678123456781234567812345678"} {
		u, err := parsePyUUID(in)
		if err != nil || u.String() != want {
			t.Errorf("parsePyUUID(%q) = %v, %v, want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"", "1234", want + "0", "g2345678-1234-5678-1234-567812345678"} {
		if u, err := parsePyUUID(bad); err == nil {
			t.Errorf("parsePyUUID(%q) = %v, want an error", bad, u)
		}
	}
}

func TestPyFloatPrefix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"1.5e3j", 5}, {"-.5", 3}, {"5.", 2}, {"1e", 1}, {"1e+", 1}, {"Infinityj", 8}, {"-nan+", 4}, {"+", 0}, {".", 0}, {"j", 0},
	} {
		if got := pyFloatPrefix(tc.in); got != tc.want {
			t.Errorf("pyFloatPrefix(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if got := parsePyFloat("-nan"); !math.IsNaN(got) || !math.Signbit(got) {
		t.Errorf("parsePyFloat(-nan) = %v (signbit %v), want a negative NaN", got, math.Signbit(got))
	}
	if got := parsePyFloat("1e999"); !math.IsInf(got, 1) {
		t.Errorf("parsePyFloat(1e999) = %v, want +Inf", got)
	}
	if got := strconv.FormatFloat(parsePyFloat("2.5E-3"), 'g', -1, 64); got != "0.0025" {
		t.Errorf("parsePyFloat(2.5E-3) = %s", got)
	}
}
