package kernels

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"testing"
)

// TestPTXIsCurrent fails when kernels.cu changed without kernels.ptx being
// regenerated: the PTX records the sha256 of the source it was made from.
func TestPTXIsCurrent(t *testing.T) {
	src, err := os.ReadFile("kernels.cu")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	m := regexp.MustCompile(`(?m)^// source-sha256: ([0-9a-f]{64})$`).FindSubmatch(PTX)
	if m == nil {
		t.Fatal("kernels.ptx has no source-sha256 line; regenerate it with scripts/check-cuda-build.sh --update-ptx")
	}
	if got, want := string(m[1]), hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("kernels.ptx was made from a kernels.cu with sha256 %s, the source now has %s; run scripts/check-cuda-build.sh --update-ptx", got, want)
	}
}

func TestPTXDeclaresEntryPoints(t *testing.T) {
	for _, name := range []string{Saxpy, IotaU32} {
		if !bytes.Contains(PTX, []byte(".visible .entry "+name+"(")) {
			t.Errorf("kernels.ptx has no entry point %q", name)
		}
	}
	// saxpy's exact CPU reference depends on the multiply and add being
	// rounded separately.
	if !bytes.Contains(PTX, []byte("--fmad=false")) || bytes.Contains(PTX, []byte("fma.rn.f32")) {
		t.Error("kernels.ptx was not built with --fmad=false (it fuses multiply-adds)")
	}
	if !bytes.Contains(PTX, []byte("\n.target sm_70")) {
		t.Error("kernels.ptx does not target sm_70, the oldest GPU the image supports")
	}
}
