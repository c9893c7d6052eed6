// Kernels shipped with modelserver, compiled to PTX by
// scripts/check-cuda-build.sh (nvcc --ptx, see kernels.go) and embedded in
// the binary. The driver compiles the PTX for the GPU it runs on.
//
// Every kernel uses a grid-stride loop, so any grid covers any n.

#include <stdint.h>

// saxpy sets y[i] = a*x[i] + y[i] for i < n. Built with --fmad=false, so the
// multiply and the add round separately, exactly like the CPU reference.
extern "C" __global__ void saxpy(uint64_t n, float a, const float *x, float *y) {
	for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
	     i += (uint64_t)gridDim.x * blockDim.x) {
		y[i] = a * x[i] + y[i];
	}
}

// iota_u32 sets out[i] = start + i*step (mod 2^32) for i < n.
extern "C" __global__ void iota_u32(uint64_t n, uint32_t start, uint32_t step, uint32_t *out) {
	for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
	     i += (uint64_t)gridDim.x * blockDim.x) {
		out[i] = start + (uint32_t)i * step;
	}
}
