package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/modelserver/modelserver/internal/onnxpb"
	"github.com/modelserver/modelserver/tensor"
)

// ErrRuntimeLibrary is wrapped by every failure to find or load the ONNX
// Runtime shared library.
var ErrRuntimeLibrary = errors.New("onnxruntime library unusable")

var ortInit struct {
	sync.Mutex
	path string
	err  error
	done bool
}

// InitONNXRuntime loads the ONNX Runtime shared library at libPath and creates
// the process-wide runtime environment. It may be called more than once with
// the same path; a different path after a successful call is an error, because
// a process can hold only one runtime.
func InitONNXRuntime(libPath string) error {
	ortInit.Lock()
	defer ortInit.Unlock()
	if ortInit.done {
		if ortInit.err == nil && ortInit.path != libPath {
			return fmt.Errorf("%w: already initialised from %s", ErrRuntimeLibrary, ortInit.path)
		}
		return ortInit.err
	}
	ortInit.done, ortInit.path = true, libPath
	ortInit.err = initONNXRuntime(libPath)
	return ortInit.err
}

func initONNXRuntime(libPath string) error {
	st, err := os.Stat(libPath)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRuntimeLibrary, err)
	}
	if st.IsDir() {
		return fmt.Errorf("%w: %s is a directory, not libonnxruntime.so", ErrRuntimeLibrary, libPath)
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrRuntimeLibrary, libPath, err)
	}
	return nil
}

// ONNXRuntimeVersion reports the version of the loaded runtime library.
func ONNXRuntimeVersion() string { return ort.GetVersion() }

// ONNXOptions tunes an ONNX Runtime session. The zero value uses the runtime's
// defaults (one intra-op thread per core, sequential execution).
type ONNXOptions struct {
	// IntraOpThreads is the number of threads one operator may use; 0 lets
	// the runtime choose (one per physical core).
	IntraOpThreads int
	// InterOpThreads is the number of operators run in parallel; 0 lets the
	// runtime choose.
	InterOpThreads int
	// Execution says where the session runs: the CPU (the zero value) or
	// ONNX Runtime's CUDA, and optionally TensorRT, execution providers on
	// a GPU. A provider that cannot be set up fails the load with an error
	// wrapping ErrProviderUnavailable.
	Execution Execution
}

// ONNXModel is a Model executed by ONNX Runtime, on the CPU or a GPU.
type ONNXModel struct {
	session   *ort.DynamicAdvancedSession
	sig       Signature
	providers Providers
}

// Providers reports the execution providers the session was created with.
func (m *ONNXModel) Providers() Providers { return m.providers }

var _ Model = (*ONNXModel)(nil)

// LoadONNXFile loads the model at path. Loading from a path lets the runtime
// resolve external weight files (model.onnx.data) next to it.
func LoadONNXFile(path string, opts ONNXOptions) (*ONNXModel, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return loadONNX(data, path, opts)
}

// LoadONNXBytes loads a serialized ONNX model held in memory.
func LoadONNXBytes(data []byte, opts ONNXOptions) (*ONNXModel, error) {
	return loadONNX(data, "", opts)
}

func loadONNX(data []byte, path string, opts ONNXOptions) (*ONNXModel, error) {
	if !ort.IsInitialized() {
		return nil, fmt.Errorf("%w: InitONNXRuntime was not called", ErrRuntimeLibrary)
	}
	sig, err := onnxSignature(data)
	if err != nil {
		return nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	defer so.Destroy()
	if opts.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
			return nil, err
		}
	}
	if opts.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(opts.InterOpThreads); err != nil {
			return nil, err
		}
	}
	providers, err := AppendProviders(so, opts.Execution)
	if err != nil {
		return nil, err
	}
	in, out := specNames(sig.Inputs), specNames(sig.Outputs)
	var session *ort.DynamicAdvancedSession
	if path != "" {
		session, err = ort.NewDynamicAdvancedSession(path, in, out, so)
	} else {
		session, err = ort.NewDynamicAdvancedSessionWithONNXData(data, in, out, so)
	}
	if err != nil {
		return nil, fmt.Errorf("creating ONNX Runtime session: %w", err)
	}
	return &ONNXModel{session: session, sig: sig, providers: providers}, nil
}

func specNames(specs []TensorSpec) []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}

// onnxSignature reads the graph's inputs and outputs from the ONNX protobuf,
// keeping the symbolic dimension names that ONNX Runtime's API drops.
// Initializers listed as graph inputs (old exporters do this) are not inputs.
func onnxSignature(data []byte) (Signature, error) {
	var model onnxpb.ModelProto
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &model); err != nil {
		return Signature{}, fmt.Errorf("parsing ONNX model: %w", err)
	}
	graph := model.GetGraph()
	if graph == nil {
		return Signature{}, errors.New("parsing ONNX model: the file has no graph")
	}
	initializers := make(map[string]bool)
	for _, init := range graph.GetInitializer() {
		initializers[init.GetName()] = true
	}
	var sig Signature
	for _, vi := range graph.GetInput() {
		if initializers[vi.GetName()] {
			continue
		}
		spec, err := specFromValueInfo(vi)
		if err != nil {
			return Signature{}, fmt.Errorf("input %q: %w", vi.GetName(), err)
		}
		sig.Inputs = append(sig.Inputs, spec)
	}
	for _, vi := range graph.GetOutput() {
		spec, err := specFromValueInfo(vi)
		if err != nil {
			return Signature{}, fmt.Errorf("output %q: %w", vi.GetName(), err)
		}
		sig.Outputs = append(sig.Outputs, spec)
	}
	if len(sig.Outputs) == 0 {
		return Signature{}, errors.New("parsing ONNX model: the graph has no outputs")
	}
	return sig, nil
}

func specFromValueInfo(vi *onnxpb.ValueInfoProto) (TensorSpec, error) {
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return TensorSpec{}, errors.New("only tensor inputs and outputs are supported")
	}
	dt, ok := dtypeFromONNX[onnxpb.TensorProto_DataType(tt.GetElemType())]
	if !ok {
		return TensorSpec{}, fmt.Errorf("element type %v is not supported", onnxpb.TensorProto_DataType(tt.GetElemType()))
	}
	if tt.GetShape() == nil {
		return TensorSpec{}, errors.New("the model declares no shape (rank) for it")
	}
	dims := tt.GetShape().GetDim()
	spec := TensorSpec{Name: vi.GetName(), DType: dt, Shape: make([]int64, len(dims)), DimNames: make([]string, len(dims))}
	for i, d := range dims {
		if v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue >= 0 {
			spec.Shape[i] = v.DimValue
			continue
		}
		spec.Shape[i] = DynamicDim
		spec.DimNames[i] = d.GetDimParam()
	}
	return spec, nil
}

var dtypeFromONNX = map[onnxpb.TensorProto_DataType]tensor.DType{
	onnxpb.TensorProto_BOOL:       tensor.Bool,
	onnxpb.TensorProto_INT8:       tensor.Int8,
	onnxpb.TensorProto_INT16:      tensor.Int16,
	onnxpb.TensorProto_INT32:      tensor.Int32,
	onnxpb.TensorProto_INT64:      tensor.Int64,
	onnxpb.TensorProto_UINT8:      tensor.Uint8,
	onnxpb.TensorProto_UINT16:     tensor.Uint16,
	onnxpb.TensorProto_UINT32:     tensor.Uint32,
	onnxpb.TensorProto_UINT64:     tensor.Uint64,
	onnxpb.TensorProto_FLOAT16:    tensor.Float16,
	onnxpb.TensorProto_BFLOAT16:   tensor.BFloat16,
	onnxpb.TensorProto_FLOAT:      tensor.Float32,
	onnxpb.TensorProto_DOUBLE:     tensor.Float64,
	onnxpb.TensorProto_COMPLEX64:  tensor.Complex64,
	onnxpb.TensorProto_COMPLEX128: tensor.Complex128,
}

// Signature implements Model.
func (m *ONNXModel) Signature() Signature { return m.sig }

// Close implements Model.
func (m *ONNXModel) Close() error { return m.session.Destroy() }

// Run implements Model. Outputs whose shape follows from the inputs (fixed
// dimensions and symbolic dimensions shared with an input) are allocated here
// and written by the runtime in place; the others are allocated by the
// runtime and copied once.
func (m *ONNXModel) Run(ctx context.Context, inputs map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var values []ort.Value
	defer func() {
		for _, v := range values {
			if v != nil {
				v.Destroy()
			}
		}
	}()
	dims := make(map[string]int64)
	for _, spec := range m.sig.Inputs {
		t, ok := inputs[spec.Name]
		if !ok {
			return nil, fmt.Errorf("%w: missing input %q", ErrInvalidInput, spec.Name)
		}
		v, err := newORTValue(t)
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: %v", ErrInvalidInput, spec.Name, err)
		}
		values = append(values, v)
		for i, name := range spec.DimNames {
			if name != "" && i < len(t.Shape) {
				dims[name] = t.Shape[i]
			}
		}
	}
	outputs := make([]ort.Value, len(m.sig.Outputs))
	for i, spec := range m.sig.Outputs {
		v, err := preallocateOutput(spec, dims)
		if err != nil {
			return nil, err
		}
		outputs[i] = v
	}
	runOpts, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRuntime, err)
	}
	defer runOpts.Destroy()
	stop := context.AfterFunc(ctx, func() { runOpts.Terminate() })
	runErr := m.session.RunWithOptions(values, outputs, runOpts)
	stop()
	values = append(values, outputs...)
	if runErr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", ErrRuntime, runErr)
	}
	result := make(map[string]tensor.Tensor, len(outputs))
	for i, spec := range m.sig.Outputs {
		t, err := tensorFromORTValue(spec.DType, outputs[i])
		if err != nil {
			return nil, fmt.Errorf("%w: output %q: %v", ErrRuntime, spec.Name, err)
		}
		result[spec.Name] = t
	}
	return result, nil
}

// newORTValue wraps t's bytes for the runtime without copying them when they
// are suitably aligned. 0-d tensors need the runtime's scalar form.
func newORTValue(t tensor.Tensor) (ort.Value, error) {
	if len(t.Shape) == 0 {
		return newORTScalar(t)
	}
	data := t.Data
	if len(data) == 0 {
		// The runtime never reads a zero-size tensor's buffer, but the
		// binding insists on a non-empty one.
		data = make([]byte, 1)
	} else if uintptr(unsafe.Pointer(&data[0]))%uintptr(t.DType.Size()) != 0 {
		data = append(make([]byte, 0, len(data)+8), data...)
		if uintptr(unsafe.Pointer(&data[0]))%uintptr(t.DType.Size()) != 0 {
			return nil, errors.New("cannot align tensor data")
		}
	}
	return ort.NewCustomDataTensor(ort.NewShape(t.Shape...), data, ortElementType(t.DType))
}

func preallocateOutput(spec TensorSpec, dims map[string]int64) (ort.Value, error) {
	shape := make([]int64, len(spec.Shape))
	for i, d := range spec.Shape {
		if d == DynamicDim {
			v, ok := dims[spec.DimNames[i]]
			if spec.DimNames[i] == "" || !ok {
				if ortTypedCopyWorks(spec.DType) {
					return nil, nil // the runtime allocates it
				}
				return nil, fmt.Errorf("%w: output %q of dtype %s has a dimension the server cannot infer from the inputs; such outputs are not supported",
					ErrRuntime, spec.Name, spec.DType)
			}
			d = v
		}
		shape[i] = d
	}
	if len(shape) == 0 {
		return newORTScalar(tensor.Tensor{DType: spec.DType, Data: make([]byte, spec.DType.Size())})
	}
	size, err := tensor.ByteSize(spec.DType, shape)
	if err != nil {
		return nil, fmt.Errorf("%w: output %q: %v", ErrRuntime, spec.Name, err)
	}
	return ort.NewCustomDataTensor(ort.NewShape(shape...), make([]byte, max(size, 1)), ortElementType(spec.DType))
}

// ortTypedCopyWorks reports whether the binding copies runtime-allocated
// outputs of dtype correctly. onnxruntime_go v1.27 copies one byte per
// element for types without a Go equivalent (float16, bfloat16, complex).
func ortTypedCopyWorks(d tensor.DType) bool {
	switch d {
	case tensor.Float16, tensor.BFloat16, tensor.Complex64, tensor.Complex128:
		return false
	}
	return true
}

func tensorFromORTValue(dt tensor.DType, v ort.Value) (tensor.Tensor, error) {
	var shape []int64
	var data []byte
	switch t := v.(type) {
	case *ort.CustomDataTensor:
		shape, data = t.GetShape(), t.GetData()
		size, err := tensor.ByteSize(dt, shape)
		if err != nil {
			return tensor.Tensor{}, err
		}
		data = data[:size]
	case *ort.Tensor[bool]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[int8]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[int16]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[int32]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[int64]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[uint8]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[uint16]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[uint32]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[uint64]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[float32]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case *ort.Tensor[float64]:
		shape, data = t.GetShape(), bytesOf(t.GetData())
	case scalarValue:
		shape, data = nil, t.bytes()
	default:
		return tensor.Tensor{}, fmt.Errorf("unexpected runtime value %T", v)
	}
	return tensor.New(dt, append([]int64(nil), shape...), data)
}

// bytesOf views a typed slice as its bytes. The slice is Go memory that the
// runtime value copied into, so it stays valid after the value is destroyed.
func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(zero)))
}

func ortElementType(d tensor.DType) ort.TensorElementDataType {
	switch d {
	case tensor.Bool:
		return ort.TensorElementDataTypeBool
	case tensor.Int8:
		return ort.TensorElementDataTypeInt8
	case tensor.Int16:
		return ort.TensorElementDataTypeInt16
	case tensor.Int32:
		return ort.TensorElementDataTypeInt32
	case tensor.Int64:
		return ort.TensorElementDataTypeInt64
	case tensor.Uint8:
		return ort.TensorElementDataTypeUint8
	case tensor.Uint16:
		return ort.TensorElementDataTypeUint16
	case tensor.Uint32:
		return ort.TensorElementDataTypeUint32
	case tensor.Uint64:
		return ort.TensorElementDataTypeUint64
	case tensor.Float16:
		return ort.TensorElementDataTypeFloat16
	case tensor.BFloat16:
		return ort.TensorElementDataTypeBFloat16
	case tensor.Float32:
		return ort.TensorElementDataTypeFloat
	case tensor.Float64:
		return ort.TensorElementDataTypeDouble
	case tensor.Complex64:
		return ort.TensorElementDataTypeComplex64
	case tensor.Complex128:
		return ort.TensorElementDataTypeComplex128
	}
	return ort.TensorElementDataTypeUndefined
}
