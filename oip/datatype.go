package oip

import (
	"errors"
	"fmt"

	"github.com/modelserver/modelserver/tensor"
)

// The Open Inference Protocol datatypes. BF16 is Triton's addition to the
// KServe table.
const (
	DatatypeBool   = "BOOL"
	DatatypeUint8  = "UINT8"
	DatatypeUint16 = "UINT16"
	DatatypeUint32 = "UINT32"
	DatatypeUint64 = "UINT64"
	DatatypeInt8   = "INT8"
	DatatypeInt16  = "INT16"
	DatatypeInt32  = "INT32"
	DatatypeInt64  = "INT64"
	DatatypeFP16   = "FP16"
	DatatypeBF16   = "BF16"
	DatatypeFP32   = "FP32"
	DatatypeFP64   = "FP64"
	DatatypeBytes  = "BYTES"
)

// ErrUnsupportedDatatype is wrapped by the errors of DType and Datatype.
var ErrUnsupportedDatatype = errors.New("unsupported datatype")

// datatypes pairs every supported datatype with its dtype; both sides are
// unique.
var datatypes = [...]struct {
	name  string
	dtype tensor.DType
}{
	{DatatypeBool, tensor.Bool},
	{DatatypeUint8, tensor.Uint8},
	{DatatypeUint16, tensor.Uint16},
	{DatatypeUint32, tensor.Uint32},
	{DatatypeUint64, tensor.Uint64},
	{DatatypeInt8, tensor.Int8},
	{DatatypeInt16, tensor.Int16},
	{DatatypeInt32, tensor.Int32},
	{DatatypeInt64, tensor.Int64},
	{DatatypeFP16, tensor.Float16},
	{DatatypeBF16, tensor.BFloat16},
	{DatatypeFP32, tensor.Float32},
	{DatatypeFP64, tensor.Float64},
}

// DType returns the tensor dtype of an OIP datatype name. Names are
// case-sensitive, as in the specification. BYTES is valid OIP but has no
// dtype here.
func DType(datatype string) (tensor.DType, error) {
	for _, dt := range datatypes {
		if dt.name == datatype {
			return dt.dtype, nil
		}
	}
	if datatype == DatatypeBytes {
		return tensor.Invalid, fmt.Errorf("%w %s: this server has no string tensors", ErrUnsupportedDatatype, datatype)
	}
	return tensor.Invalid, fmt.Errorf("%w %q", ErrUnsupportedDatatype, datatype)
}

// Datatype returns the OIP datatype name of a dtype; complex dtypes have
// none.
func Datatype(d tensor.DType) (string, error) {
	for _, dt := range datatypes {
		if dt.dtype == d {
			return dt.name, nil
		}
	}
	return "", fmt.Errorf("%w: dtype %s has no Open Inference Protocol datatype", ErrUnsupportedDatatype, d)
}
