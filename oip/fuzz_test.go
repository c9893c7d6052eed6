package oip

import (
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/modelserver/modelserver/proto/inferencepb"
)

// FuzzDecodeHTTPRequest checks that any body decodes to valid tensors or
// an error, without panicking.
func FuzzDecodeHTTPRequest(f *testing.F) {
	f.Add([]byte(`{"id":"1","inputs":[{"name":"a","shape":[1,4],"datatype":"FP32","data":[[1,-2,0.5,3]]},`+
		`{"name":"b","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]},{"name":"flag","shape":[1,1],"datatype":"BOOL","data":[true]}]}`), -1)
	header := `{"inputs":[{"name":"a","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"sum","parameters":{"binary_data":true}}]}`
	f.Add(append([]byte(header), make([]byte, 16)...), len(header))
	f.Add(make([]byte, 32), 0)
	f.Add([]byte(`{"inputs":[{"name":"a","shape":[4294967296,4294967296],"datatype":"FP32","data":[1]}]}`), -1)
	f.Add([]byte(`{"inputs":[{"name":"a","shape":[],"datatype":"UINT64","data":18446744073709551615}]}`), -1)
	f.Fuzz(func(t *testing.T, body []byte, headerLen int) {
		var hl []string
		if headerLen >= 0 {
			hl = []string{strconv.Itoa(headerLen)}
		}
		req, err := decodeHTTPRequest(body, hl, mixedSignature)
		if err != nil {
			return
		}
		for name, in := range req.inputs {
			if err := in.Validate(); err != nil {
				t.Errorf("input %q decoded invalid: %v", name, err)
			}
		}
	})
}

// FuzzDecodeInputs checks that any ModelInferRequest decodes to valid
// tensors or an error, without panicking.
func FuzzDecodeInputs(f *testing.F) {
	for _, req := range []*pb.ModelInferRequest{
		{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{2}}},
			RawInputContents: [][]byte{make([]byte, 8)}},
		{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "INT8", Shape: []int64{3},
			Contents: &pb.InferTensorContents{IntContents: []int32{-128, 0, 127}}}}},
		{Inputs: []*pb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "BOOL", Shape: []int64{1, 1},
			Contents: &pb.InferTensorContents{BoolContents: []bool{true}}}}},
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var req pb.ModelInferRequest
		if proto.Unmarshal(wire, &req) != nil {
			return
		}
		inputs, err := DecodeInputs(&req)
		if err != nil {
			return
		}
		for name, in := range inputs {
			if err := in.Validate(); err != nil {
				t.Errorf("input %q decoded invalid: %v", name, err)
			}
		}
	})
}
