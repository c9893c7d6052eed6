package codec

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/modelserver/modelserver/tensor"
)

// The interop tests run testdata/interop.py under Debian's python3 with
// python3-numpy and python3-msgpack-numpy (msgpack_numpy 0.4.8) and compare
// bit for bit in both directions. bfloat16 is left out: numpy cannot name
// it without ml_dtypes.

const python = "/usr/bin/python3"

// runPython runs interop.py in mode, skipping the test when Python's
// packages are missing unless MODELSERVER_REQUIRE_INTEROP=1.
func runPython(t *testing.T, mode string, stdin any) []byte {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import numpy, msgpack, msgpack_numpy").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("%s with numpy and msgpack_numpy is needed (apt-get install python3-msgpack-numpy): %v: %s", python, err, out)
		if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set MODELSERVER_REQUIRE_INTEROP=1 to make this a failure")
	}
	cmd := exec.Command(python, filepath.Join("testdata", "interop.py"), mode)
	if stdin != nil {
		in, err := json.Marshal(stdin)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = bytes.NewReader(in)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("interop.py %s: %v\n%s", mode, err, stderr.Bytes())
	}
	return out
}

// unmarshalNumbers decodes JSON keeping numbers exact.
func unmarshalNumbers(t *testing.T, data []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		t.Fatal(err)
	}
}

type pyTensorCase struct {
	Name    string  `json:"name"`
	Msgpack hexData `json:"msgpack"`
	DType   string  `json:"dtype"`
	Shape   []int64 `json:"shape"`
	Data    hexData `json:"data"`
	Scalar  bool    `json:"scalar"`
}

type pyJSONCase struct {
	Name  string  `json:"name"`
	JSON  string  `json:"json"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Data  hexData `json:"data"`
}

type pyValueCase struct {
	Name    string  `json:"name"`
	Msgpack hexData `json:"msgpack"`
	Repr    any     `json:"repr"`
}

type hexData []byte

func (h *hexData) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	var err error
	*h, err = hex.DecodeString(s)
	return err
}

func (h hexData) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

func TestInteropPythonToGo(t *testing.T) {
	var emitted struct {
		Tensors []pyTensorCase `json:"tensors"`
		JSON    []pyJSONCase   `json:"json"`
		Values  []pyValueCase  `json:"values"`
	}
	unmarshalNumbers(t, runPython(t, "emit", nil), &emitted)
	if len(emitted.Tensors) < 70 || len(emitted.JSON) < 12 || len(emitted.Values) < 10 {
		t.Fatalf("interop.py emitted too few cases: %d tensors, %d json, %d values", len(emitted.Tensors), len(emitted.JSON), len(emitted.Values))
	}
	for _, c := range emitted.Tensors {
		d, _, err := tensor.ParseDType(c.DType)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		want := tt(d, c.Shape, c.Data)
		var wantV any = want
		if c.Scalar {
			wantV = Scalar{want}
			if d == tensor.Float64 { // np.float64 is a Python float: msgpack packs it natively
				wantV = math.Float64frombits(leUint64(c.Data))
			}
		}
		got, err := DecodeMsgpack(c.Msgpack)
		if err != nil || !cmp.Equal(got, wantV, treeOpts) {
			t.Errorf("%s: DecodeMsgpack(% x) = %v, %v, want %v", c.Name, []byte(c.Msgpack), got, err, wantV)
		}
	}
	for _, c := range emitted.JSON {
		d, _, err := tensor.ParseDType(c.DType)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		got, _, err := DecodeTensors([]byte(c.JSON), false, func(string) (tensor.DType, bool) { return d, true })
		if want := tt(d, c.Shape, c.Data); err != nil || !sameTensor(got["x"], want) {
			t.Errorf("%s: DecodeTensors(%s) = %v, %v; numpy makes %v", c.Name, c.JSON, got["x"], err, want)
		}
	}
	for _, c := range emitted.Values {
		got, err := DecodeMsgpack(c.Msgpack)
		if err != nil {
			t.Errorf("%s: DecodeMsgpack: %v", c.Name, err)
			continue
		}
		if repr := pyDescribe(got); !cmp.Equal(repr, c.Repr) {
			t.Errorf("%s: decoded %#v; diff -go +python:\n%s", c.Name, got, cmp.Diff(repr, c.Repr))
		}
	}
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := range 8 {
		v |= uint64(b[i]) << (8 * i)
	}
	return v
}

// pyDescribe renders a decoded value as interop.py's describe does.
func pyDescribe(v any) any {
	switch v := v.(type) {
	case nil, bool, string:
		return v
	case int64:
		return json.Number(strconv.FormatInt(v, 10))
	case uint64:
		return json.Number(strconv.FormatUint(v, 10))
	case float64:
		return map[string]any{"float": fmt.Sprintf("%016x", math.Float64bits(v))}
	case []byte:
		return map[string]any{"bytes": hex.EncodeToString(v)}
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = pyDescribe(x)
		}
		return map[string]any{"list": out}
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			out[k] = pyDescribe(x)
		}
		return map[string]any{"dict": out}
	case tensor.Tensor:
		shape := make([]any, len(v.Shape))
		for i, d := range v.Shape {
			shape[i] = json.Number(strconv.FormatInt(d, 10))
		}
		return map[string]any{"ndarray": v.DType.String(), "shape": shape, "data": hex.EncodeToString(v.Data)}
	case Scalar:
		return map[string]any{"scalar": v.DType.String(), "data": hex.EncodeToString(v.Data)}
	case time.Time:
		s, _ := formatISODateTime(v)
		return map[string]any{"datetime": s}
	case Date:
		return map[string]any{"date": v.String()}
	case TimeOfDay:
		return map[string]any{"time": v.String()}
	case Timedelta:
		return map[string]any{"timedelta": []any{json.Number(strconv.FormatInt(v.Days, 10)),
			json.Number(strconv.FormatInt(v.Seconds, 10)), json.Number(strconv.FormatInt(v.Microseconds, 10))}}
	case Decimal:
		return map[string]any{"Decimal": string(v)}
	case uuid.UUID:
		return map[string]any{"UUID": v.String()}
	case Complex:
		return map[string]any{"complex": formatPyComplex(complex128(v))}
	}
	return fmt.Sprintf("unexpected %T", v)
}

// goValues are what Go sends to Python: every dtype (but bfloat16) in every
// layout, the extension types and a plain tree.
func goValues(t *testing.T) map[string]any {
	values := map[string]any{}
	for _, d := range tensor.AllDTypes() {
		if d == tensor.BFloat16 {
			continue
		}
		values[d.String()+"/2x3"] = tt(d, []int64{2, 3}, sampleData(d, 6))
		values[d.String()+"/0-d"] = tt(d, []int64{}, sampleData(d, 1))
		values[d.String()+"/zero-size"] = tt(d, []int64{3, 0}, nil)
		values[d.String()+"/scalar"] = Scalar{tt(d, []int64{}, sampleData(d, 1))}
	}
	for _, c := range canonicalExtCases {
		v, err := DecodeMsgpack(c.body)
		if err != nil {
			t.Fatal(err)
		}
		values["ext/"+c.name] = v
	}
	tree := goldenValues()["tree"].(map[string]any)
	tree["floats"] = []any{0.1, math.Inf(-1), -0.5} // Python would widen a float32
	values["tree"] = tree
	values["complex nan"] = Complex(complex(math.NaN(), math.Inf(-1)))
	return values
}

func TestInteropGoToPython(t *testing.T) {
	values := goValues(t)
	type sent struct {
		Name    string  `json:"name"`
		Msgpack hexData `json:"msgpack"`
	}
	var cases []sent
	for name, v := range values {
		enc, err := EncodeMsgpack(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cases = append(cases, sent{name, enc})
	}
	var checked []struct {
		Name     string  `json:"name"`
		Repr     any     `json:"repr"`
		Repacked hexData `json:"repacked"`
	}
	unmarshalNumbers(t, runPython(t, "check", cases), &checked)
	if len(checked) != len(cases) {
		t.Fatalf("Python checked %d values, sent %d", len(checked), len(cases))
	}
	for i, c := range checked {
		v := values[c.Name]
		want, wantBytes := pyDescribe(v), []byte(cases[i].Msgpack)
		if s, ok := v.(Scalar); ok && s.DType == tensor.Float64 {
			// np.float64 is a Python float, which msgpack packs natively.
			wantBytes = mustEncode(t, math.Float64frombits(leUint64(s.Data)))
		}
		if !cmp.Equal(c.Repr, want) {
			t.Errorf("%s: Python decoded it as %v, want %v", c.Name, c.Repr, want)
		}
		if !bytes.Equal(c.Repacked, wantBytes) {
			t.Errorf("%s: Python re-encodes it as % x, Go wrote % x", c.Name, []byte(c.Repacked), wantBytes)
		}
	}
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := EncodeMsgpack(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInteropJSONAnswers(t *testing.T) {
	outputs := map[string]tensor.Tensor{}
	var order []string
	for _, d := range tensor.AllDTypes() {
		if d == tensor.BFloat16 || d == tensor.Complex64 || d == tensor.Complex128 {
			continue
		}
		outputs[d.String()] = tt(d, []int64{2, 3}, finiteSample(d, 6))
		order = append(order, d.String())
	}
	outputs["float32"] = tt(tensor.Float32, []int64{4}, le([]float32{0.1, 1e-45, 3.4028235e38, float32(math.NaN())}))
	for _, f := range []Format{FormatJSONLists, FormatJSONArrayField} {
		body, err := EncodeTensors(outputs, order, f)
		if err != nil {
			t.Fatal(err)
		}
		var raw any
		unmarshalNumbers(t, body, &raw)
		var got map[string]struct {
			Shape []int64 `json:"shape"`
			Data  hexData `json:"data"`
		}
		unmarshalNumbers(t, runPython(t, "json", raw), &got)
		for name, want := range outputs {
			if g := got[name]; !sameTensor(tt(want.DType, g.Shape, g.Data), want) {
				t.Errorf("%v %s: numpy reads % x %v, Go wrote % x %v", f, name, []byte(g.Data), g.Shape, want.Data, want.Shape)
			}
		}
	}
}
