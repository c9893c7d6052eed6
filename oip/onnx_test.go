package oip

import (
	"testing"

	"github.com/modelserver/modelserver/internal/testmodel"
)

// TestHTTPInferONNX serves onnxgen.MixedFixture behind a Batcher, as the
// command does, and checks the JSON answer byte for byte.
func TestHTTPInferONNX(t *testing.T) {
	sig, b := testmodel.ServeMixed(t)
	_, ts := newHTTP(t, &Model{Name: "mixed", Signature: sig, Predictor: b}, HandlerOptions{})
	body := `{"id":"onnx","inputs":[` +
		`{"name":"a","shape":[2,4],"datatype":"FP32","data":[[1,-2,0.5,3],[-1,2,0,4]]},` +
		`{"name":"b","shape":[2,4],"datatype":"INT64","data":[[1,2,3,4],[10,20,30,40]]},` +
		`{"name":"flag","shape":[2,1],"datatype":"BOOL","data":[[true],[false]]}]}`
	want := `{"model_name":"mixed","model_version":"1","id":"onnx","outputs":[` +
		`{"name":"sum","datatype":"FP32","shape":[2,4],"data":[2,0,3.5,7,9,22,30,44]},` +
		`{"name":"row_total","datatype":"INT64","shape":[2],"data":[10,100]},` +
		`{"name":"positive","datatype":"BOOL","shape":[2,4],"data":[true,false,true,true,false,false,false,false]},` +
		`{"name":"scaled","datatype":"FP64","shape":[2,4],"data":[2.5,-5,1.25,7.5,-2.5,5,0,10]}]}`
	r := doHTTP(t, ts, "POST", "/v2/models/mixed/infer", nil, []byte(body))
	if r.status != 200 || string(r.body) != want {
		t.Errorf("infer on ONNX Runtime = %d\n%s\nwant\n%s", r.status, r.body, want)
	}
	r = doHTTP(t, ts, "GET", "/v2/models/mixed", nil, nil)
	wantMD := `{"name":"mixed","versions":["1"],"platform":"onnxruntime_onnx",` +
		`"inputs":[{"name":"a","datatype":"FP32","shape":[-1,4]},{"name":"b","datatype":"INT64","shape":[-1,4]},{"name":"flag","datatype":"BOOL","shape":[-1,1]}],` +
		`"outputs":[{"name":"sum","datatype":"FP32","shape":[-1,4]},{"name":"row_total","datatype":"INT64","shape":[-1]},` +
		`{"name":"positive","datatype":"BOOL","shape":[-1,4]},{"name":"scaled","datatype":"FP64","shape":[-1,4]}]}`
	if r.status != 200 || string(r.body) != wantMD {
		t.Errorf("metadata of the ONNX model = %d %s", r.status, r.body)
	}
}
