package oip

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelserver/modelserver/engine"
	pb "github.com/modelserver/modelserver/proto/inferencepb"
	"github.com/modelserver/modelserver/tensor"
)

// oipDTypes are the dtypes with an OIP datatype.
func oipDTypes() []tensor.DType {
	var out []tensor.DType
	for _, d := range tensor.AllDTypes() {
		if _, err := Datatype(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}

func mustDatatype(d tensor.DType) string {
	dt, err := Datatype(d)
	if err != nil {
		panic(err)
	}
	return dt
}

func TestRawRoundTripEveryDatatype(t *testing.T) {
	for _, d := range oipDTypes() {
		for _, shape := range [][]int64{{2, 3}, {}, {0, 4}, {5}} {
			want := patterned(d, shape)
			req := &pb.ModelInferRequest{
				Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: mustDatatype(d), Shape: shape}},
				RawInputContents: [][]byte{want.Data},
			}
			// Through the wire format, as a client would send it.
			wire, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			var got pb.ModelInferRequest
			if err := proto.Unmarshal(wire, &got); err != nil {
				t.Fatal(err)
			}
			inputs, err := DecodeInputs(&got)
			if err != nil {
				t.Fatalf("DecodeInputs(%v %v) = %v", d, shape, err)
			}
			x := inputs["x"]
			if x.DType != d || !slices.Equal(x.Shape, shape) || !bytes.Equal(x.Data, want.Data) {
				t.Errorf("DecodeInputs(%v %v) = %v %v % x, want % x", d, shape, x.DType, x.Shape, x.Data, want.Data)
			}

			resp := &pb.ModelInferResponse{}
			if err := EncodeOutputs(resp, OutputSelection{Names: []string{"y"}}, map[string]tensor.Tensor{"y": x}); err != nil {
				t.Fatalf("EncodeOutputs(%v) = %v", d, err)
			}
			if len(resp.Outputs) != 1 || len(resp.RawOutputContents) != 1 {
				t.Fatalf("EncodeOutputs(%v) = %v", d, resp)
			}
			o := resp.Outputs[0]
			if o.Name != "y" || o.Datatype != mustDatatype(d) || !slices.Equal(o.Shape, shape) || o.Contents != nil ||
				!bytes.Equal(resp.RawOutputContents[0], want.Data) {
				t.Errorf("EncodeOutputs(%v %v) = %v raw % x, want raw % x", d, shape, o, resp.RawOutputContents[0], want.Data)
			}
		}
	}
}

func TestRawInputsAreNotCopied(t *testing.T) {
	raw := f32([]int64{2}, 1, 2).Data
	inputs, err := DecodeInputs(&pb.ModelInferRequest{
		Inputs:           []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{2}}},
		RawInputContents: [][]byte{raw},
	})
	if err != nil {
		t.Fatal(err)
	}
	if &inputs["x"].Data[0] != &raw[0] {
		t.Error("DecodeInputs copied raw_input_contents")
	}
}

func TestTypedRoundTripEveryDatatype(t *testing.T) {
	tests := []struct {
		datatype string
		contents *pb.InferTensorContents
		want     tensor.Tensor
	}{
		{"BOOL", &pb.InferTensorContents{BoolContents: []bool{true, false, true}},
			bools([]int64{3}, true, false, true)},
		{"INT8", &pb.InferTensorContents{IntContents: []int32{-128, 0, 127}},
			tensor.Tensor{DType: tensor.Int8, Shape: []int64{3}, Data: []byte{0x80, 0, 0x7f}}},
		{"INT16", &pb.InferTensorContents{IntContents: []int32{-32768, 1, 32767}},
			tensor.Tensor{DType: tensor.Int16, Shape: []int64{3}, Data: []byte{0, 0x80, 1, 0, 0xff, 0x7f}}},
		{"INT32", &pb.InferTensorContents{IntContents: []int32{math.MinInt32, -1, math.MaxInt32}},
			tensor.Tensor{DType: tensor.Int32, Shape: []int64{3}, Data: []byte{0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}}},
		{"INT64", &pb.InferTensorContents{Int64Contents: []int64{math.MinInt64, 5, math.MaxInt64}},
			i64([]int64{3}, math.MinInt64, 5, math.MaxInt64)},
		{"UINT8", &pb.InferTensorContents{UintContents: []uint32{0, 1, 255}},
			tensor.Tensor{DType: tensor.Uint8, Shape: []int64{3}, Data: []byte{0, 1, 0xff}}},
		{"UINT16", &pb.InferTensorContents{UintContents: []uint32{0, 258, 65535}},
			tensor.Tensor{DType: tensor.Uint16, Shape: []int64{3}, Data: []byte{0, 0, 2, 1, 0xff, 0xff}}},
		{"UINT32", &pb.InferTensorContents{UintContents: []uint32{0, 1, math.MaxUint32}},
			tensor.Tensor{DType: tensor.Uint32, Shape: []int64{3}, Data: []byte{0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}}},
		{"UINT64", &pb.InferTensorContents{Uint64Contents: []uint64{0, 1, math.MaxUint64}},
			tensor.Tensor{DType: tensor.Uint64, Shape: []int64{3}, Data: append(make([]byte, 8), append([]byte{1, 0, 0, 0, 0, 0, 0, 0}, bytes.Repeat([]byte{0xff}, 8)...)...)}},
		{"FP32", &pb.InferTensorContents{Fp32Contents: []float32{-1.5, 0, float32(math.Inf(1))}},
			f32([]int64{3}, -1.5, 0, float32(math.Inf(1)))},
		{"FP64", &pb.InferTensorContents{Fp64Contents: []float64{math.SmallestNonzeroFloat64, -0.25, math.MaxFloat64}},
			f64([]int64{3}, math.SmallestNonzeroFloat64, -0.25, math.MaxFloat64)},
	}
	for _, tt := range tests {
		req := &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: tt.datatype, Shape: []int64{3}, Contents: tt.contents}}}
		inputs, err := DecodeInputs(req)
		if err != nil {
			t.Errorf("DecodeInputs(%s) = %v", tt.datatype, err)
			continue
		}
		got := inputs["x"]
		if got.DType != tt.want.DType || !slices.Equal(got.Shape, tt.want.Shape) || !bytes.Equal(got.Data, tt.want.Data) {
			t.Errorf("DecodeInputs(%s) = %v %v % x, want %v %v % x", tt.datatype, got.DType, got.Shape, got.Data, tt.want.DType, tt.want.Shape, tt.want.Data)
		}
		resp := &pb.ModelInferResponse{}
		if err := EncodeOutputs(resp, OutputSelection{Names: []string{"y"}, Typed: true}, map[string]tensor.Tensor{"y": got}); err != nil {
			t.Errorf("EncodeOutputs(%s typed) = %v", tt.datatype, err)
			continue
		}
		if len(resp.RawOutputContents) != 0 || !proto.Equal(resp.Outputs[0].Contents, tt.contents) || resp.Outputs[0].Datatype != tt.datatype {
			t.Errorf("EncodeOutputs(%s typed) = %v raw %d, want contents %v", tt.datatype, resp.Outputs[0], len(resp.RawOutputContents), tt.contents)
		}
	}
}

// TestTypedRoundTripPatterned checks every typed dtype on data covering all
// byte values: typed contents decode back to the same bytes.
func TestTypedRoundTripPatterned(t *testing.T) {
	for _, d := range oipDTypes() {
		if d == tensor.Float16 || d == tensor.BFloat16 {
			continue
		}
		want := patterned(d, []int64{4, 5})
		// int8/int16 and uint8/uint16 patterns are in range by construction.
		c, err := encodeContents(want)
		if err != nil {
			t.Fatalf("encodeContents(%v) = %v", d, err)
		}
		inputs, err := DecodeInputs(&pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			{Name: "x", Datatype: mustDatatype(d), Shape: want.Shape, Contents: c}}})
		if err != nil {
			t.Fatalf("DecodeInputs(%v) = %v", d, err)
		}
		if !bytes.Equal(inputs["x"].Data, want.Data) {
			t.Errorf("typed round trip of %v = % x, want % x", d, inputs["x"].Data, want.Data)
		}
	}
}

func TestDecodeInputsErrors(t *testing.T) {
	in := func(name, datatype string, shape []int64, c *pb.InferTensorContents) *pb.ModelInferRequest_InferInputTensor {
		return &pb.ModelInferRequest_InferInputTensor{Name: name, Datatype: datatype, Shape: shape, Contents: c}
	}
	fp32 := func(n int) *pb.InferTensorContents { return &pb.InferTensorContents{Fp32Contents: make([]float32, n)} }
	tests := []struct {
		name string
		req  *pb.ModelInferRequest
		want string // a substring of the error
	}{
		{"raw count", &pb.ModelInferRequest{
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{in("a", "FP32", []int64{1}, nil), in("b", "FP32", []int64{1}, nil)},
			RawInputContents: [][]byte{make([]byte, 4)}},
			"raw_input_contents has 1 entries for 2 inputs"},
		{"raw size", &pb.ModelInferRequest{
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{in("a", "FP32", []int64{2, 3}, nil)},
			RawInputContents: [][]byte{make([]byte, 23)}},
			`input "a": raw content has 23 bytes, FP32 [2,3] needs 24`},
		{"raw and contents", &pb.ModelInferRequest{
			Inputs:           []*pb.ModelInferRequest_InferInputTensor{in("a", "FP32", []int64{1}, fp32(1))},
			RawInputContents: [][]byte{make([]byte, 4)}},
			`input "a" sets contents while the request uses raw_input_contents`},
		{"wrong field", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "FP32", []int64{1}, &pb.InferTensorContents{IntContents: []int32{1}})}},
			`input "a": FP32 [1]: elements belong in fp32_contents, but int_contents is set`},
		{"extra field", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "FP32", []int64{1}, &pb.InferTensorContents{Fp32Contents: []float32{1}, Fp64Contents: []float64{1}})}},
			`but fp64_contents is set`},
		{"count", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{in("a", "FP32", []int64{2, 2}, fp32(3))}},
			`input "a": FP32 [2,2]: needs 4 elements, fp32_contents holds 3`},
		{"no data", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{in("a", "INT64", []int64{2}, nil)}},
			`input "a": INT64 [2]: no data`},
		{"fp16 typed", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("h", "FP16", []int64{1}, &pb.InferTensorContents{Fp32Contents: []float32{1}})}},
			`input "h": FP16 [1]: 16-bit floats have no typed contents field`},
		{"bf16 typed", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("h", "BF16", []int64{1}, &pb.InferTensorContents{Fp32Contents: []float32{1}})}},
			`input "h": BF16 [1]: 16-bit floats have no typed contents field`},
		{"int8 range", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "INT8", []int64{2}, &pb.InferTensorContents{IntContents: []int32{1, 128}})}},
			`input "a": INT8 [2]: element 1 is 128, outside the range of int8`},
		{"int16 range", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "INT16", []int64{1}, &pb.InferTensorContents{IntContents: []int32{-32769}})}},
			`element 0 is -32769, outside the range of int16`},
		{"uint8 range", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "UINT8", []int64{1}, &pb.InferTensorContents{UintContents: []uint32{256}})}},
			`element 0 is 256, outside the range of uint8`},
		{"uint16 range", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "UINT16", []int64{1}, &pb.InferTensorContents{UintContents: []uint32{65536}})}},
			`element 0 is 65536, outside the range of uint16`},
		{"unknown datatype", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{in("a", "FLOAT", []int64{1}, fp32(1))}},
			`input "a": unsupported datatype "FLOAT"`},
		{"bytes", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("s", "BYTES", []int64{1}, &pb.InferTensorContents{BytesContents: [][]byte{[]byte("hi")}})}},
			`input "s": unsupported datatype BYTES`},
		{"negative dimension", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{in("a", "FP32", []int64{2, -1}, fp32(2))}},
			`input "a": invalid shape: negative dimension -1`},
		{"element count overflow", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "FP32", []int64{1 << 32, 1 << 32}, fp32(1))}},
			`input "a": invalid shape: element count of [4294967296 4294967296] overflows`},
		{"byte size overflow", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "FP64", []int64{1 << 61}, fp32(1))}},
			`input "a": invalid shape`},
		{"duplicate", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{
			in("a", "FP32", []int64{1}, fp32(1)), in("a", "FP32", []int64{1}, fp32(1))}},
			`input "a" is given twice`},
		{"no name", &pb.ModelInferRequest{Inputs: []*pb.ModelInferRequest_InferInputTensor{in("", "FP32", []int64{1}, fp32(1))}},
			`input 0 has no name`},
	}
	for _, tt := range tests {
		_, err := DecodeInputs(tt.req)
		if !errors.Is(err, engine.ErrInvalidInput) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: DecodeInputs() = %v, want ErrInvalidInput containing %q", tt.name, err, tt.want)
		}
	}
}

// TestDecodeChecksSizesBeforeAllocating sends small requests that claim
// huge tensors; decoding must fail without allocating their size.
func TestDecodeChecksSizesBeforeAllocating(t *testing.T) {
	huge := []int64{1 << 31, 4} // 64 GiB of FP64
	reqs := map[string]*pb.ModelInferRequest{
		"typed": {Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "a", Datatype: "FP64", Shape: huge,
			Contents: &pb.InferTensorContents{Fp64Contents: []float64{1}}}}},
		"raw": {Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "a", Datatype: "FP64", Shape: huge}},
			RawInputContents: [][]byte{make([]byte, 8)}},
	}
	for name, req := range reqs {
		var err error
		allocated := allocatedDuring(func() { _, err = DecodeInputs(req) })
		if !errors.Is(err, engine.ErrInvalidInput) {
			t.Errorf("%s: DecodeInputs() = %v, want ErrInvalidInput", name, err)
		}
		if allocated > 1<<20 {
			t.Errorf("%s: DecodeInputs() allocated %d bytes before rejecting the request", name, allocated)
		}
	}
}

var selectSig = engine.Signature{Outputs: []engine.TensorSpec{
	{Name: "y", DType: tensor.Float32, Shape: []int64{-1}},
	{Name: "label", DType: tensor.Int64, Shape: []int64{-1}},
	{Name: "half", DType: tensor.Float16, Shape: []int64{-1}},
}}

func TestSelectOutputs(t *testing.T) {
	binary := func(v bool) map[string]*pb.InferParameter {
		return map[string]*pb.InferParameter{ParamBinaryData: {ParameterChoice: &pb.InferParameter_BoolParam{BoolParam: v}}}
	}
	out := func(name string, params map[string]*pb.InferParameter) *pb.ModelInferRequest_InferRequestedOutputTensor {
		return &pb.ModelInferRequest_InferRequestedOutputTensor{Name: name, Parameters: params}
	}
	tests := []struct {
		name    string
		outputs []*pb.ModelInferRequest_InferRequestedOutputTensor
		want    OutputSelection
		wantErr string
	}{
		{"all by default", nil, OutputSelection{Names: []string{"y", "label", "half"}}, ""},
		{"request order", []*pb.ModelInferRequest_InferRequestedOutputTensor{out("label", nil), out("y", nil)},
			OutputSelection{Names: []string{"label", "y"}}, ""},
		{"binary true stays raw", []*pb.ModelInferRequest_InferRequestedOutputTensor{out("y", binary(true))},
			OutputSelection{Names: []string{"y"}}, ""},
		{"binary false is typed", []*pb.ModelInferRequest_InferRequestedOutputTensor{out("y", binary(false)), out("label", nil)},
			OutputSelection{Names: []string{"y", "label"}, Typed: true}, ""},
		{"mixed", []*pb.ModelInferRequest_InferRequestedOutputTensor{out("y", binary(false)), out("label", binary(true))},
			OutputSelection{}, `outputs "y" ask binary_data=false and "label" binary_data=true`},
		{"fp16 typed", []*pb.ModelInferRequest_InferRequestedOutputTensor{out("y", binary(false)), out("half", nil)},
			OutputSelection{}, `output "half" is FP16, which has no typed contents field`},
		{"unknown", []*pb.ModelInferRequest_InferRequestedOutputTensor{out("z", nil)},
			OutputSelection{}, `unknown output "z" (model outputs: "y", "label", "half")`},
		{"twice", []*pb.ModelInferRequest_InferRequestedOutputTensor{out("y", nil), out("y", nil)},
			OutputSelection{}, `output "y" is requested twice`},
		{"not a bool", []*pb.ModelInferRequest_InferRequestedOutputTensor{out("y", map[string]*pb.InferParameter{
			ParamBinaryData: {ParameterChoice: &pb.InferParameter_StringParam{StringParam: "false"}}})},
			OutputSelection{}, `output "y": parameter "binary_data" must be a bool_param`},
	}
	for _, tt := range tests {
		got, err := SelectOutputs(&pb.ModelInferRequest{Outputs: tt.outputs}, selectSig)
		if tt.wantErr != "" {
			if !errors.Is(err, engine.ErrInvalidInput) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: SelectOutputs() = %v, want ErrInvalidInput containing %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got.Names, tt.want.Names) || got.Typed != tt.want.Typed {
			t.Errorf("%s: SelectOutputs() = %+v, %v, want %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestEncodeOutputsModelFaults(t *testing.T) {
	tests := []struct {
		name    string
		outputs map[string]tensor.Tensor
		typed   bool
		want    string
	}{
		{"missing", map[string]tensor.Tensor{}, false, `output "y" is missing`},
		{"malformed", map[string]tensor.Tensor{"y": {DType: tensor.Float32, Shape: []int64{2}, Data: make([]byte, 7)}}, false, `output "y"`},
		{"complex", map[string]tensor.Tensor{"y": {DType: tensor.Complex64, Shape: []int64{1}, Data: make([]byte, 8)}}, false, "complex64 has no Open Inference Protocol datatype"},
		{"fp16 typed", map[string]tensor.Tensor{"y": {DType: tensor.Float16, Shape: []int64{1}, Data: make([]byte, 2)}}, true, "no typed contents"},
	}
	for _, tt := range tests {
		err := EncodeOutputs(&pb.ModelInferResponse{}, OutputSelection{Names: []string{"y"}, Typed: tt.typed}, tt.outputs)
		if err == nil || errors.Is(err, engine.ErrInvalidInput) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: EncodeOutputs() = %v, want an error containing %q not wrapping ErrInvalidInput", tt.name, err, tt.want)
		}
	}
}

func TestModelLookupAndMetadata(t *testing.T) {
	m := Model{Name: "mixed", Signature: engine.Signature{
		Inputs:  []engine.TensorSpec{{Name: "a", DType: tensor.Float32, Shape: []int64{engine.DynamicDim, 4}}},
		Outputs: []engine.TensorSpec{{Name: "h", DType: tensor.BFloat16, Shape: []int64{}}},
	}}.WithDefaults()
	if m.Version != "1" || m.Platform != "onnxruntime_onnx" {
		t.Errorf("WithDefaults() = version %q platform %q", m.Version, m.Platform)
	}
	for _, tt := range []struct {
		name, version string
		ok            bool
	}{{"mixed", "", true}, {"mixed", "1", true}, {"mixed", "2", false}, {"other", "", false}, {"", "", false}} {
		err := m.Lookup(tt.name, tt.version)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrModelNotFound)) {
			t.Errorf("Lookup(%q, %q) = %v, want ok %v", tt.name, tt.version, err, tt.ok)
		}
	}
	md, err := ModelMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	want := Metadata{Name: "mixed", Versions: []string{"1"}, Platform: "onnxruntime_onnx",
		Inputs:  []TensorMetadata{{"a", "FP32", []int64{-1, 4}}},
		Outputs: []TensorMetadata{{"h", "BF16", []int64{}}}}
	if md.Name != want.Name || !slices.Equal(md.Versions, want.Versions) || md.Platform != want.Platform ||
		len(md.Inputs) != 1 || len(md.Outputs) != 1 || md.Inputs[0].Datatype != "FP32" || !slices.Equal(md.Inputs[0].Shape, []int64{-1, 4}) ||
		md.Outputs[0].Datatype != "BF16" || md.Outputs[0].Shape == nil {
		t.Errorf("ModelMetadata() = %+v, want %+v", md, want)
	}
}
