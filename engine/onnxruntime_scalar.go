package engine

import (
	"fmt"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelserver/modelserver/tensor"
)

// The binding refuses 0-d shapes for ordinary tensors, so 0-d inputs and
// outputs go through its typed Scalar, wrapped to expose the element bytes.
type scalarValue interface {
	ort.Value
	bytes() []byte
}

type ortScalar[T ort.TensorData] struct{ *ort.Scalar[T] }

func (s ortScalar[T]) bytes() []byte {
	v := s.GetData()
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&v)), unsafe.Sizeof(v))...)
}

func newScalar[T ort.TensorData](data []byte) (ort.Value, error) {
	var v T
	if len(data) != int(unsafe.Sizeof(v)) {
		return nil, fmt.Errorf("0-d tensor has %d bytes, want %d", len(data), unsafe.Sizeof(v))
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&v)), len(data)), data)
	s, err := ort.NewScalar(v)
	if err != nil {
		return nil, err
	}
	return ortScalar[T]{s}, nil
}

func newORTScalar(t tensor.Tensor) (ort.Value, error) {
	switch t.DType {
	case tensor.Bool:
		return newScalar[bool](t.Data)
	case tensor.Int8:
		return newScalar[int8](t.Data)
	case tensor.Int16:
		return newScalar[int16](t.Data)
	case tensor.Int32:
		return newScalar[int32](t.Data)
	case tensor.Int64:
		return newScalar[int64](t.Data)
	case tensor.Uint8:
		return newScalar[uint8](t.Data)
	case tensor.Uint16:
		return newScalar[uint16](t.Data)
	case tensor.Uint32:
		return newScalar[uint32](t.Data)
	case tensor.Uint64:
		return newScalar[uint64](t.Data)
	case tensor.Float32:
		return newScalar[float32](t.Data)
	case tensor.Float64:
		return newScalar[float64](t.Data)
	}
	return nil, fmt.Errorf("0-d tensors of dtype %s are not supported by the runtime binding", t.DType)
}
