package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// ONNX Runtime's names for its execution providers.
const (
	ProviderCPU      = "CPUExecutionProvider"
	ProviderCUDA     = "CUDAExecutionProvider"
	ProviderTensorRT = "TensorrtExecutionProvider"
)

// ErrProviderUnavailable is wrapped when ONNX Runtime cannot set up an
// execution provider: the runtime library was built without it (the CPU
// build that scripts/install-onnxruntime.sh installs), or its provider
// library (libonnxruntime_providers_cuda.so) or one of the CUDA libraries
// that needs (libcudart, libcublas, libcudnn) is missing or too old. Whether
// to fall back to the CPU is the caller's decision (cuda.Placement.Fallback).
var ErrProviderUnavailable = errors.New("execution provider unavailable")

// Execution says where ONNX Runtime runs a session. The zero value runs on
// the CPU.
type Execution struct {
	// CUDA runs the session with ONNX Runtime's CUDA execution provider on
	// device DeviceID. Operators the provider lacks run on the CPU.
	CUDA     bool
	DeviceID int
	// TensorRT puts the TensorRT execution provider in front of CUDA, for
	// the parts of the graph TensorRT supports. It needs CUDA, and
	// libnvinfer, which the ONNX Runtime GPU release does not contain; when
	// it cannot be set up the session runs on CUDA alone and
	// Providers.TensorRTErr says why.
	TensorRT bool
	// GPUMemLimit caps the CUDA provider's memory arena in bytes; 0 leaves
	// it unlimited (ONNX Runtime's default).
	GPUMemLimit int64
	// ArenaExtendStrategy is how the arena grows: "kNextPowerOfTwo" (ONNX
	// Runtime's default, fewer allocations) or "kSameAsRequested" (less
	// waste, for memory-tight deployments). Empty means the default.
	ArenaExtendStrategy string
	// TensorRTFP16 lets TensorRT run in half precision.
	TensorRTFP16 bool
	// TensorRTCacheDir, when set, keeps TensorRT's built engines there so
	// later starts skip the build. It must be writable.
	TensorRTCacheDir string
}

// String is "cpu", "cuda:N" or "tensorrt+cuda:N".
func (e Execution) String() string {
	switch {
	case !e.CUDA:
		return "cpu"
	case e.TensorRT:
		return "tensorrt+cuda:" + strconv.Itoa(e.DeviceID)
	}
	return "cuda:" + strconv.Itoa(e.DeviceID)
}

// Validate checks the settings without touching ONNX Runtime.
func (e Execution) Validate() error {
	switch {
	case e.DeviceID < 0:
		return fmt.Errorf("execution: device id %d is negative", e.DeviceID)
	case e.GPUMemLimit < 0:
		return fmt.Errorf("execution: gpu_mem_limit %d is negative", e.GPUMemLimit)
	case e.ArenaExtendStrategy != "" && e.ArenaExtendStrategy != "kNextPowerOfTwo" && e.ArenaExtendStrategy != "kSameAsRequested":
		return fmt.Errorf("execution: arena_extend_strategy %q is not kNextPowerOfTwo or kSameAsRequested", e.ArenaExtendStrategy)
	}
	return nil
}

// cudaOptions are the CUDA provider's options
// (onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html).
func (e Execution) cudaOptions() map[string]string {
	o := map[string]string{"device_id": strconv.Itoa(e.DeviceID)}
	if e.GPUMemLimit > 0 {
		o["gpu_mem_limit"] = strconv.FormatInt(e.GPUMemLimit, 10)
	}
	if e.ArenaExtendStrategy != "" {
		o["arena_extend_strategy"] = e.ArenaExtendStrategy
	}
	return o
}

// tensorRTOptions are the TensorRT provider's options
// (onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html).
func (e Execution) tensorRTOptions() map[string]string {
	o := map[string]string{"device_id": strconv.Itoa(e.DeviceID)}
	if e.TensorRTFP16 {
		o["trt_fp16_enable"] = "1"
	}
	if e.TensorRTCacheDir != "" {
		o["trt_engine_cache_enable"] = "1"
		o["trt_engine_cache_path"] = e.TensorRTCacheDir
	}
	return o
}

// Providers reports what AppendProviders set up.
type Providers struct {
	// Names lists the execution providers in the order ONNX Runtime tries
	// them for each operator; the CPU provider is always last.
	Names []string
	// TensorRTErr says why TensorRT was asked for but left out; nil
	// otherwise. It wraps ErrProviderUnavailable.
	TensorRTErr error
}

// String joins the names: "CUDAExecutionProvider,CPUExecutionProvider".
func (p Providers) String() string { return strings.Join(p.Names, ",") }

// Primary is the first provider, the one meant to run the model.
func (p Providers) Primary() string {
	if len(p.Names) == 0 {
		return ProviderCPU
	}
	return p.Names[0]
}

// AppendProviders adds e's execution providers to so, TensorRT first when
// asked, then CUDA; ONNX Runtime adds the CPU provider itself. A CUDA
// provider that cannot be set up is an error wrapping ErrProviderUnavailable
// (discard so then: a TensorRT provider may already be in it); a TensorRT
// provider that cannot is reported in Providers.TensorRTErr and skipped.
//
// ONNX Runtime reports missing provider libraries when the provider is
// added, so a caller can fall back to the CPU before creating the session.
func AppendProviders(so *ort.SessionOptions, e Execution) (Providers, error) {
	if err := e.Validate(); err != nil {
		return Providers{}, err
	}
	if !e.CUDA {
		return Providers{Names: []string{ProviderCPU}}, nil
	}
	var p Providers
	if e.TensorRT {
		if err := appendTensorRT(so, e.tensorRTOptions()); err != nil {
			p.TensorRTErr = fmt.Errorf("%w: %s on device %d: %v", ErrProviderUnavailable, ProviderTensorRT, e.DeviceID, err)
		} else {
			p.Names = append(p.Names, ProviderTensorRT)
		}
	}
	if err := appendCUDA(so, e.cudaOptions()); err != nil {
		err = fmt.Errorf("%w: %s on device %d: %v", ErrProviderUnavailable, ProviderCUDA, e.DeviceID, err)
		return Providers{}, errors.Join(err, p.TensorRTErr)
	}
	p.Names = append(p.Names, ProviderCUDA, ProviderCPU)
	return p, nil
}

// appendCUDA and appendTensorRT are variables so tests can make them fail
// where the runtime has the providers.
var (
	appendCUDA = func(so *ort.SessionOptions, options map[string]string) error {
		o, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return err
		}
		defer o.Destroy()
		if err := o.Update(options); err != nil {
			return err
		}
		return so.AppendExecutionProviderCUDA(o)
	}
	appendTensorRT = func(so *ort.SessionOptions, options map[string]string) error {
		o, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return err
		}
		defer o.Destroy()
		if err := o.Update(options); err != nil {
			return err
		}
		return so.AppendExecutionProviderTensorRT(o)
	}
)

// ApplyMetadata reads the execution settings of a model's config.yaml
// model_metadata.onnxruntime section into e and returns the result:
//
//	model_metadata:
//	  onnxruntime:
//	    tensorrt: true                      # TensorRT in front of CUDA
//	    tensorrt_fp16: true
//	    tensorrt_cache_dir: /tmp/trt-cache
//	    gpu_mem_limit_bytes: 21474836480    # cap the CUDA arena at 20 GiB
//	    arena_extend_strategy: kSameAsRequested
//
// The device itself comes from --device, not from here. Unknown keys and
// values of the wrong type are errors, so a typo does not silently change
// where a model runs. A missing section leaves e unchanged.
func ApplyMetadata(e Execution, metadata map[string]any) (Execution, error) {
	raw, ok := metadata["onnxruntime"]
	if !ok || raw == nil {
		return e, nil
	}
	section, ok := raw.(map[string]any)
	if !ok {
		return e, fmt.Errorf("model_metadata.onnxruntime must be a mapping, not %T", raw)
	}
	for key, v := range section {
		var err error
		switch key {
		case "tensorrt":
			e.TensorRT, err = metaBool(v)
		case "tensorrt_fp16":
			e.TensorRTFP16, err = metaBool(v)
		case "tensorrt_cache_dir":
			e.TensorRTCacheDir, err = metaString(v)
		case "gpu_mem_limit_bytes":
			e.GPUMemLimit, err = metaInt(v)
		case "arena_extend_strategy":
			e.ArenaExtendStrategy, err = metaString(v)
		default:
			return e, fmt.Errorf("model_metadata.onnxruntime.%s is not a setting modelserver knows (tensorrt, tensorrt_fp16, tensorrt_cache_dir, gpu_mem_limit_bytes, arena_extend_strategy)", key)
		}
		if err != nil {
			return e, fmt.Errorf("model_metadata.onnxruntime.%s: %v", key, err)
		}
	}
	return e, e.Validate()
}

func metaBool(v any) (bool, error) {
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("want true or false, not %T %v", v, v)
	}
	return b, nil
}

func metaString(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a string, not %T %v", v, v)
	}
	return s, nil
}

// metaInt accepts the integer types a YAML decoder produces.
func metaInt(v any) (int64, error) {
	switch n := v.(type) {
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	case uint64:
		if n <= 1<<63-1 {
			return int64(n), nil
		}
	case float64:
		if n == float64(int64(n)) {
			return int64(n), nil
		}
	}
	return 0, fmt.Errorf("want a whole number of bytes, not %T %v", v, v)
}
