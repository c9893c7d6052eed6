// Command hello is Truss Chains' Hello World as a Go Chain: HelloAll (the
// entrypoint) fans out to SayHello once per name, concurrently; SayHello
// asks RandInt for lucky numbers, in binary mode (an ndarray over msgpack)
// with 3 attempts.
//
//	hello --chainlet RandInt --port 8003
//	hello --chainlet SayHello --port 8002 --dep RandInt=http://127.0.0.1:8003/v1/models/model:predict
//	hello --chainlet HelloAll --port 8001 --dep SayHello=http://127.0.0.1:8002/v1/models/model:predict
//	curl -s localhost:8001/v1/models/model:predict -d '{"names": ["Marius", "Sid", "Bola"]}'
//
// An empty name makes RandInt raise a ValueError three Chainlets down,
// which comes back up as a nested Chainlet-Traceback. For fault-injection
// tests, HELLO_RANDINT_FAIL_FIRST=N makes RandInt's first N calls answer 503.
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/modelserver/modelserver/chains"
	"github.com/modelserver/modelserver/tensor"
)

// RandIntInput are RandInt's arguments.
type RandIntInput struct {
	MaxValue int `json:"max_value"`
	Count    int `json:"count"`
}

// RandInt draws Count integers in [1, MaxValue], as an int64 ndarray.
type RandInt struct {
	// FailFirst makes the first calls fail with a transient 503.
	FailFirst int64
	calls     atomic.Int64
}

// RunRemote draws the numbers.
func (r *RandInt) RunRemote(_ context.Context, in RandIntInput) (tensor.Tensor, error) {
	if r.calls.Add(1) <= r.FailFirst {
		return tensor.Tensor{}, chains.HTTPError(http.StatusServiceUnavailable, "injected transient failure")
	}
	if err := validateMaxValue(in.MaxValue); err != nil {
		return tensor.Tensor{}, err
	}
	data := make([]byte, 0, 8*in.Count)
	for range in.Count {
		data = binary.LittleEndian.AppendUint64(data, uint64(1+rand.IntN(in.MaxValue)))
	}
	return tensor.New(tensor.Int64, []int64{int64(in.Count)}, data)
}

func validateMaxValue(v int) error {
	if v < 1 {
		return chains.ValueError("max_value must be at least 1, got %d", v)
	}
	return nil
}

// SayHelloInput are SayHello's arguments.
type SayHelloInput struct {
	Name string `json:"name"`
}

// SayHello greets one person with lucky numbers from RandInt.
type SayHello struct {
	RandInt chains.Dep[RandIntInput, tensor.Tensor] `chains:"RandInt,retries=3,binary"`
}

// RunRemote greets.
func (s *SayHello) RunRemote(ctx context.Context, in SayHelloInput) (string, error) {
	nums, err := s.RandInt.RunRemote(ctx, RandIntInput{MaxValue: len(in.Name), Count: 3})
	if err != nil {
		return "", err
	}
	if nums.DType != tensor.Int64 || len(nums.Data) != 8*3 {
		return "", fmt.Errorf("RandInt answered %s %v", nums.DType, nums.Shape)
	}
	lucky := make([]string, 3)
	for i := range lucky {
		lucky[i] = strconv.FormatInt(int64(binary.LittleEndian.Uint64(nums.Data[8*i:])), 10)
	}
	return fmt.Sprintf("Hello, %s! Lucky numbers: %s", in.Name, strings.Join(lucky, " ")), nil
}

// HelloAllInput are HelloAll's arguments: {"names": [...]}.
type HelloAllInput struct {
	Names []string `json:"names"`
}

// HelloAll is the entrypoint: it greets everyone concurrently, one
// SayHello call per name, and joins the greetings with newlines.
type HelloAll struct {
	chains.Entrypoint
	SayHello chains.Dep[SayHelloInput, string] `chains:"SayHello"`
}

// RunRemote greets everyone.
func (h *HelloAll) RunRemote(ctx context.Context, in HelloAllInput) (string, error) {
	greetings := make([]string, len(in.Names))
	g, gctx := errgroup.WithContext(ctx)
	for i, name := range in.Names {
		g.Go(func() error {
			s, err := h.SayHello.RunRemote(gctx, SayHelloInput{Name: name})
			greetings[i] = s
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	return strings.Join(greetings, "\n"), nil
}

// Chainlets returns the Chain's Chainlets; failFirst is RandInt's number of
// injected transient failures.
func Chainlets(failFirst int64) []any {
	return []any{&HelloAll{}, &SayHello{}, &RandInt{FailFirst: failFirst}}
}

func main() {
	failFirst, _ := strconv.ParseInt(os.Getenv("HELLO_RANDINT_FAIL_FIRST"), 10, 64)
	chains.Main(Chainlets(failFirst)...)
}
