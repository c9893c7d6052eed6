//go:build !cuda

package cuda

import (
	"errors"
	"testing"
)

func TestDevicesWithoutCUDA(t *testing.T) {
	devices, err := Devices()
	if !errors.Is(err, ErrNoCUDA) || devices != nil {
		t.Fatalf("Devices() = %v, %v; want nil, ErrNoCUDA", devices, err)
	}
}
