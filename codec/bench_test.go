package codec

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/tensor"
)

// The benchmarks move one 16 MiB float32 tensor. Every one reports the
// tensor's 16 MiB through SetBytes, whatever the body size (also reported,
// as body-MiB), so MB/s compares directly with BenchmarkMemcpy.

const benchSize = 16 << 20

// benchTensor holds normally distributed values from a fixed seed, whose
// shortest reprs are 8 to 11 characters, as model outputs often are.
func benchTensor() tensor.Tensor {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, benchSize/4)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64())
	}
	return tt(tensor.Float32, []int64{int64(len(vals))}, le(vals))
}

func BenchmarkMemcpy(b *testing.B) {
	src := benchTensor().Data
	dst := make([]byte, len(src))
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		copy(dst, src)
	}
}

// BenchmarkMemcpyFresh copies into a new buffer each time, as a decoder
// that cannot alias the body must: the fair bound for unaligned msgpack.
func BenchmarkMemcpyFresh(b *testing.B) {
	src := benchTensor().Data
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		dst := make([]byte, len(src))
		copy(dst, src)
	}
}

// msgpackBody returns a predict body whose tensor data starts at an offset
// that is (or, for aligned=false, is not) a multiple of 4, in a buffer
// whose start is aligned.
func msgpackBody(b testing.TB, t tensor.Tensor, aligned bool) []byte {
	for n := 1; n < 8; n++ {
		name := strings.Repeat("x", n)
		body, err := EncodeTensors(map[string]tensor.Tensor{name: t}, []string{name}, FormatMsgpack)
		if err != nil {
			b.Fatal(err)
		}
		if off := len(body) - len(t.Data); (off%4 == 0) == aligned {
			return copyAligned(body, 64)
		}
	}
	b.Fatal("no name gives the wanted alignment")
	return nil
}

func BenchmarkDecode(b *testing.B) {
	t := benchTensor()
	float32Inputs := func(string) (tensor.DType, bool) { return tensor.Float32, true }
	bodies := []struct {
		name   string
		binary bool
		body   []byte
	}{
		{"msgpack-aligned", true, msgpackBody(b, t, true)},
		{"msgpack-unaligned", true, msgpackBody(b, t, false)},
		{"json-b64", false, mustEncodeTensors(b, t, FormatJSONArrayField)},
		{"json-lists", false, mustEncodeTensors(b, t, FormatJSONLists)},
	}
	for _, bb := range bodies {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(benchSize)
			b.ReportAllocs()
			for b.Loop() {
				got, _, err := DecodeTensors(bb.body, bb.binary, float32Inputs)
				if err != nil || len(got) != 1 {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(bb.body))/(1<<20), "body-MiB")
		})
	}
}

// BenchmarkDecodeInPlace decodes an unaligned body with
// DecodeTensorsInPlace, which moves the data to alignment within the body.
// Each iteration decodes a fresh copy of the body, restored outside the timer.
func BenchmarkDecodeInPlace(b *testing.B) {
	t := benchTensor()
	float32Inputs := func(string) (tensor.DType, bool) { return tensor.Float32, true }
	original := msgpackBody(b, t, false)
	body := copyAligned(original, 64)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		copy(body, original)
		b.StartTimer()
		got, _, err := DecodeTensorsInPlace(body, true, float32Inputs)
		if err != nil || len(got) != 1 {
			b.Fatal(err)
		}
	}
}

func mustEncodeTensors(b testing.TB, t tensor.Tensor, f Format) []byte {
	body, err := EncodeTensors(map[string]tensor.Tensor{"x": t}, []string{"x"}, f)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func BenchmarkEncode(b *testing.B) {
	t := benchTensor()
	for _, f := range []Format{FormatMsgpack, FormatJSONArrayField, FormatJSONLists} {
		b.Run(map[Format]string{FormatMsgpack: "msgpack", FormatJSONArrayField: "json-b64", FormatJSONLists: "json-lists"}[f], func(b *testing.B) {
			b.SetBytes(benchSize)
			b.ReportAllocs()
			var body []byte
			for b.Loop() {
				body = mustEncodeTensors(b, t, f)
			}
			b.ReportMetric(float64(len(body))/(1<<20), "body-MiB")
		})
	}
}

// TestBenchBodiesRoundTrip keeps the benchmark inputs honest: each body
// decodes to the benchmark tensor, and the aligned msgpack body decodes
// without a copy.
func TestBenchBodiesRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("16 MiB bodies")
	}
	want := benchTensor()
	for _, tc := range []struct {
		body     []byte
		binary   bool
		zeroCopy bool
	}{
		{msgpackBody(t, want, true), true, true},
		{msgpackBody(t, want, false), true, false},
		{mustEncodeTensors(t, want, FormatJSONArrayField), false, false},
		{mustEncodeTensors(t, want, FormatJSONLists), false, false},
	} {
		got, _, err := DecodeTensors(tc.body, tc.binary, func(string) (tensor.DType, bool) { return tensor.Float32, true })
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range got {
			if !bytes.Equal(v.Data, want.Data) || aliases(v.Data, tc.body) != tc.zeroCopy {
				t.Errorf("bench body decodes wrongly (zero-copy %v, want %v)", aliases(v.Data, tc.body), tc.zeroCopy)
			}
		}
	}
}
