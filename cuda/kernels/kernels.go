// Package kernels holds the CUDA kernels modelserver ships: kernels.cu,
// compiled to PTX by scripts/check-cuda-build.sh (which fails when the
// committed kernels.ptx is not what nvcc makes of kernels.cu; run it with
// --update-ptx after editing the source). The PTX is embedded, so a binary
// needs no file at run time, and the driver compiles it for whichever GPU it
// finds (sm_70 and newer; PTX ISA 7.8 needs a CUDA 11.8 or newer driver).
//
// The package is plain data and builds without the cuda tag; load PTX with
// cuda.Thread.LoadModule.
package kernels

import _ "embed"

// PTX is kernels.ptx.
//
//go:embed kernels.ptx
var PTX []byte

// Entry points of PTX, with their parameters.
const (
	// Saxpy: (n uint64, a float32, x, y DevicePtr) sets y[i] = a*x[i] + y[i],
	// rounding after the multiply and after the add (no fused multiply-add).
	Saxpy = "saxpy"
	// IotaU32: (n uint64, start, step uint32, out DevicePtr) sets
	// out[i] = start + i*step modulo 2^32.
	IotaU32 = "iota_u32"
)
