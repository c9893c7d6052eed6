// Package testort locates the ONNX Runtime library for tests, in one place.
//
// A test that needs the runtime calls Library: it returns the path from
// ONNXRUNTIME_LIB, else where scripts/install-onnxruntime.sh installs it.
// Without a library the test is skipped on a developer's machine, and fails
// when MODELSERVER_REQUIRE_ORT=1, as scripts/test.sh (CI) sets it.
package testort

import (
	"os"
	"testing"
)

// DefaultPath is where scripts/install-onnxruntime.sh installs the library
// when run as root.
const DefaultPath = "/usr/local/lib/libonnxruntime.so"

// Library returns the runtime library's path, or skips or fails tb.
func Library(tb testing.TB) string {
	tb.Helper()
	lib := os.Getenv("ONNXRUNTIME_LIB")
	if lib == "" {
		lib = DefaultPath
	}
	if _, err := os.Stat(lib); err != nil {
		Unusable(tb, err)
	}
	return lib
}

// Unusable skips tb because the runtime cannot be used, or fails it when
// MODELSERVER_REQUIRE_ORT=1.
func Unusable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("MODELSERVER_REQUIRE_ORT") == "1" {
		tb.Fatalf("ONNX Runtime unusable and MODELSERVER_REQUIRE_ORT=1: %v (run scripts/install-onnxruntime.sh)", err)
	}
	tb.Skipf("ONNX Runtime unusable: %v; run scripts/install-onnxruntime.sh", err)
}
