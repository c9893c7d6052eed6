//go:build cuda

// cuInit interposer and small driver helpers that gorgonia.org/cu lacks.
//
// gorgonia.org/cu calls cuInit(0) in its package init and calls os.Exit(1)
// when it fails, so a binary importing it dies before main on a host that has
// the driver library but no usable GPU (no device, CUDA_VISIBLE_DEVICES="",
// a driver/library mismatch). The executable's own definition of cuInit below
// takes precedence over libcuda's when cu's object is linked, so cu's call
// lands here: the first call (cu's) forwards to the real cuInit, records its
// result for cuda.Probe and reports success; every later call is forwarded
// and answered unchanged. Libraries that look cuInit up in libcuda
// themselves (the CUDA runtime, ONNX Runtime) never pass through here.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <cuda.h>

static CUresult first_init_result = CUDA_SUCCESS;
static int init_calls = 0;

CUresult CUDAAPI cuInit(unsigned int flags) {
	typedef CUresult (*init_fn)(unsigned int);
	static init_fn real_init = NULL;
	if (real_init == NULL) {
		real_init = (init_fn)dlsym(RTLD_NEXT, "cuInit");
	}
	CUresult r = real_init != NULL ? real_init(flags) : CUDA_ERROR_NOT_INITIALIZED;
	if (init_calls++ == 0) {
		first_init_result = r;
		return CUDA_SUCCESS;
	}
	return r;
}

// modelserver_cuinit_result is the result of the first cuInit, and -1 if
// cuInit was never called.
int modelserver_cuinit_result(void) {
	return init_calls == 0 ? -1 : (int)first_init_result;
}

// modelserver_cudart_version returns the cudaRuntimeGetVersion of the CUDA
// runtime library the process uses, copying the library's name into lib: one
// already loaded (by ONNX Runtime, say) if any, else the first installed of
// CUDA 12 (what ONNX Runtime 1.24's GPU release links), 13, 11. It returns 0
// when none is installed, or when the library cannot say (CUDA 11 answers
// cudaErrorNoDevice on a host without a GPU). A library loaded here stays loaded: unloading the
// CUDA runtime is not safe.
int modelserver_cudart_version(char *lib, int lib_len) {
	static const char *names[] = {
		"libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0", "libcudart.so", NULL,
	};
	typedef int (*version_fn)(int *);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; names[i] != NULL; i++) {
			void *h = dlopen(names[i], pass == 0 ? RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD : RTLD_NOW | RTLD_LOCAL);
			if (h == NULL) {
				continue;
			}
			version_fn get = (version_fn)dlsym(h, "cudaRuntimeGetVersion");
			if (get == NULL) {
				continue;
			}
			// Some runtimes answer cudaErrorNoDevice without a GPU; the
			// library is still the one in use.
			int v = 0;
			snprintf(lib, (size_t)lib_len, "%s", names[i]);
			return get(&v) == 0 ? v : 0;
		}
	}
	return 0;
}
