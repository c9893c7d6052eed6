package oip

import (
	"errors"
	"testing"

	"github.com/modelserver/modelserver/tensor"
)

func TestDatatypeMapping(t *testing.T) {
	tests := []struct {
		datatype string
		dtype    tensor.DType
	}{
		{"BOOL", tensor.Bool},
		{"UINT8", tensor.Uint8},
		{"UINT16", tensor.Uint16},
		{"UINT32", tensor.Uint32},
		{"UINT64", tensor.Uint64},
		{"INT8", tensor.Int8},
		{"INT16", tensor.Int16},
		{"INT32", tensor.Int32},
		{"INT64", tensor.Int64},
		{"FP16", tensor.Float16},
		{"BF16", tensor.BFloat16},
		{"FP32", tensor.Float32},
		{"FP64", tensor.Float64},
	}
	for _, tt := range tests {
		if got, err := DType(tt.datatype); got != tt.dtype || err != nil {
			t.Errorf("DType(%q) = %v, %v, want %v, nil", tt.datatype, got, err, tt.dtype)
		}
		if got, err := Datatype(tt.dtype); got != tt.datatype || err != nil {
			t.Errorf("Datatype(%v) = %q, %v, want %q, nil", tt.dtype, got, err, tt.datatype)
		}
	}
	// Every dtype but the complex ones has a datatype.
	for _, d := range tensor.AllDTypes() {
		_, err := Datatype(d)
		if wantErr := d == tensor.Complex64 || d == tensor.Complex128; (err != nil) != wantErr {
			t.Errorf("Datatype(%v) error = %v, want error %v", d, err, wantErr)
		}
		if err != nil && !errors.Is(err, ErrUnsupportedDatatype) {
			t.Errorf("Datatype(%v) error %v does not wrap ErrUnsupportedDatatype", d, err)
		}
	}
	if _, err := Datatype(tensor.Invalid); !errors.Is(err, ErrUnsupportedDatatype) {
		t.Errorf("Datatype(Invalid) error = %v, want ErrUnsupportedDatatype", err)
	}
}

func TestDTypeRejects(t *testing.T) {
	for _, name := range []string{"BYTES", "fp32", "FLOAT32", "TYPE_FP32", "", "COMPLEX64"} {
		d, err := DType(name)
		if d != tensor.Invalid || !errors.Is(err, ErrUnsupportedDatatype) {
			t.Errorf("DType(%q) = %v, %v, want Invalid, ErrUnsupportedDatatype", name, d, err)
		}
	}
}
