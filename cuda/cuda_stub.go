//go:build !cuda

package cuda

// Devices lists the GPUs; without the cuda build tag it reports ErrNoCUDA.
func Devices() ([]Device, error) { return nil, ErrNoCUDA }
