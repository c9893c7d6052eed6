package chains_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/modelserver/modelserver/chains"
	"github.com/modelserver/modelserver/tensor"
)

// BenchmarkCall measures one Chainlet call (Leaf) through the wire path:
// over loopback HTTP as a Chain's dependency would call it, and in process
// as RunLocal does, in JSON and binary, with a small and a 1 MiB ndarray.
func BenchmarkCall(b *testing.B) {
	c, err := chains.New(&Top{}, &Mid{}, &Leaf{})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		c.Serve(ctx, ln, chains.ServeOptions{Chainlet: "Leaf", Logger: quietLogger()})
	})
	defer func() {
		cancel()
		wg.Wait()
	}()
	remoteURL := "http://" + ln.Addr().String() + chains.PredictPath
	local, err := chains.RunLocal[MidInput, LeafOutput](c, chains.LocalOptions{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{4, 1 << 20} {
		arr := float32s(make([]float32, size/4)...)
		for _, binary := range []bool{false, true} {
			mode := "json"
			if binary {
				mode = "binary"
			}
			remote := chains.NewClient[LeafInput, LeafOutput]("Leaf", chains.Endpoint{URL: remoteURL}, chains.DepOptions{Binary: binary}, "")
			b.Run(fmt.Sprintf("remote/%s/%dB", mode, size), func(b *testing.B) {
				benchCall(b, &remote, LeafInput{Value: 1, Array: arr}, size)
			})
			remote.CloseIdleConnections()
		}
		b.Run(fmt.Sprintf("local-chain/json+binary/%dB", size), func(b *testing.B) {
			benchCall(b, &local, MidInput{Value: 1, Array: arr}, size)
		})
	}
}

func benchCall[In any](b *testing.B, d *chains.Dep[In, LeafOutput], in In, size int) {
	ctx := context.Background()
	b.SetBytes(int64(2 * size))
	b.ReportAllocs()
	for b.Loop() {
		out, err := d.RunRemote(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		if out.Doubled.DType != tensor.Float32 {
			b.Fatal("wrong answer")
		}
	}
}
