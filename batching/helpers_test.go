package batching_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const dyn = engine.DynamicDim

// call is one Run of a fakeModel.
type call struct {
	ctx      context.Context
	inputs   map[string]tensor.Tensor // as passed to Run
	snapshot map[string]tensor.Tensor // deep copy taken when Run started
	release  chan struct{}            // closed by the test to let a gated Run compute
	returned chan struct{}            // closed when Run has returned
	err      error                    // Run's error; read after returned
}

// fakeModel is an engine.Model computing fn. A gated model blocks every Run
// until the test closes its call's release channel or the run's context
// ends. Every Run is announced on started (when not nil).
type fakeModel struct {
	sig     engine.Signature
	fn      func(map[string]tensor.Tensor) (map[string]tensor.Tensor, error)
	gated   bool
	started chan *call

	stop     chan struct{} // closed to unblock every gated Run, when a test ends
	stopOnce sync.Once

	mu         sync.Mutex // guards the following
	running    int
	maxRunning int
	runs       int
	mutated    []string // inputs that changed while a Run was reading them
}

var _ engine.Model = (*fakeModel)(nil)

func newFakeModel(sig engine.Signature, fn func(map[string]tensor.Tensor) (map[string]tensor.Tensor, error), gated bool) *fakeModel {
	return &fakeModel{sig: sig, fn: fn, gated: gated, started: make(chan *call, 4096), stop: make(chan struct{})}
}

var errStopped = errors.New("fake model stopped at the end of the test")

// startBatcher returns a Batcher for m that is closed when the test ends,
// after m's blocked executions are let go, so that a failing test does not
// hang in Close.
func startBatcher(t testing.TB, m *fakeModel, opts ...batching.Option) *batching.Batcher {
	b := batching.New(m, opts...)
	t.Cleanup(func() { shutdown(m, b, &sync.WaitGroup{}) })
	return b
}

func (m *fakeModel) Signature() engine.Signature { return m.sig }
func (m *fakeModel) Close() error                { return nil }

func (m *fakeModel) Run(ctx context.Context, inputs map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	c := &call{ctx: ctx, inputs: inputs, snapshot: cloneTensors(inputs), release: make(chan struct{}), returned: make(chan struct{})}
	m.mu.Lock()
	m.running++
	m.runs++
	m.maxRunning = max(m.maxRunning, m.running)
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running--
		m.mu.Unlock()
		close(c.returned)
	}()
	if m.started != nil {
		m.started <- c
	}
	if m.gated {
		select {
		case <-c.release:
		case <-ctx.Done():
			c.err = ctx.Err()
			return nil, c.err
		case <-m.stop:
			c.err = errStopped
			return nil, c.err
		}
	}
	for name, t := range inputs {
		if !slices.Equal(t.Data, c.snapshot[name].Data) || !slices.Equal(t.Shape, c.snapshot[name].Shape) {
			m.mu.Lock()
			m.mutated = append(m.mutated, name)
			m.mu.Unlock()
		}
	}
	out, err := m.fn(inputs)
	c.err = err
	return out, err
}

// shutdown lets m's blocked executions go, closes b and waits for wg, so
// that a test that fails while executions are blocked ends instead of
// hanging.
func shutdown(m *fakeModel, b *batching.Batcher, wg *sync.WaitGroup) {
	m.stopOnce.Do(func() { close(m.stop) })
	b.Close()
	wg.Wait()
}

func (m *fakeModel) stats() (running, maxRunning, runs int, mutated []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running, m.maxRunning, m.runs, slices.Clone(m.mutated)
}

// nextCall waits for the next Run to start.
func (m *fakeModel) nextCall(t testing.TB) *call {
	t.Helper()
	select {
	case c := <-m.started:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a model execution")
		return nil
	}
}

func cloneTensors(in map[string]tensor.Tensor) map[string]tensor.Tensor {
	out := make(map[string]tensor.Tensor, len(in))
	for name, t := range in {
		out[name] = tensor.Tensor{DType: t.DType, Shape: slices.Clone(t.Shape), Data: slices.Clone(t.Data)}
	}
	return out
}

// recorder is an Observer that records every event.
type recorder struct {
	mu            sync.Mutex // guards the following
	depth         int
	depths        []int
	enqueues      int // QueueDepth calls that raised the depth
	dequeued      []time.Duration
	dropped       []error
	dropWaits     []time.Duration
	batches       []batchEvent
	resultDropped int
	unbatchable   []error
}

type batchEvent struct {
	rows, requests int
	err            error
}

var _ batching.Observer = (*recorder)(nil)

func (r *recorder) QueueDepth(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > r.depth {
		r.enqueues++
	}
	r.depth = n
	r.depths = append(r.depths, n)
}

func (r *recorder) RequestDequeued(wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dequeued = append(r.dequeued, wait)
}

func (r *recorder) RequestDropped(wait time.Duration, reason error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped = append(r.dropped, reason)
	r.dropWaits = append(r.dropWaits, wait)
}

func (r *recorder) BatchExecuted(rows, requests int, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, batchEvent{rows, requests, err})
}

func (r *recorder) ResultDropped() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resultDropped++
}

func (r *recorder) Unbatchable(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unbatchable = append(r.unbatchable, err)
}

// read runs f with the recorder locked.
func (r *recorder) read(f func(r *recorder)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// eventually polls cond until it holds, failing the test after a generous
// timeout. It never makes a test pass on timing alone: cond is the check.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// waitFor waits for wg, failing the test if that takes more than 10s (a
// Predict that never returns).
func waitFor(t testing.TB, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for Predict calls to return")
	}
}

// Tensor construction and reading.

func f32(shape []int64, v []float32) tensor.Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return mustTensor(tensor.Float32, shape, b)
}

func f32s(t tensor.Tensor) []float32 {
	v := make([]float32, len(t.Data)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
	}
	return v
}

func i64(shape []int64, v []int64) tensor.Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return mustTensor(tensor.Int64, shape, b)
}

func i64s(t tensor.Tensor) []int64 {
	v := make([]int64, len(t.Data)/8)
	for i := range v {
		v[i] = int64(binary.LittleEndian.Uint64(t.Data[8*i:]))
	}
	return v
}

func mustTensor(d tensor.DType, shape []int64, data []byte) tensor.Tensor {
	t, err := tensor.New(d, shape, data)
	if err != nil {
		panic(err)
	}
	return t
}

// rowwiseModel: x float32 [N, D] → y = 2x+1 float32 [N, D] and
// tag = int64(x[r, 0]) int64 [N]. Rows are independent.
func rowwiseSig() engine.Signature {
	return engine.Signature{
		Inputs: []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{dyn, dyn}, DimNames: []string{"batch", "d"}}},
		Outputs: []engine.TensorSpec{
			{Name: "y", DType: tensor.Float32, Shape: []int64{dyn, dyn}, DimNames: []string{"batch", "d"}},
			{Name: "tag", DType: tensor.Int64, Shape: []int64{dyn}, DimNames: []string{"batch"}},
		},
	}
}

func rowwise(in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	x := in["x"]
	n, d := x.Shape[0], x.Shape[1]
	v := f32s(x)
	y := make([]float32, len(v))
	tag := make([]int64, n)
	for i, e := range v {
		y[i] = 2*e + 1
	}
	for r := range n {
		if d > 0 {
			tag[r] = int64(v[r*d])
		}
	}
	return map[string]tensor.Tensor{
		"y":   f32(slices.Clone(x.Shape), y),
		"tag": i64([]int64{n}, tag),
	}, nil
}

// mixer sums the rows of x: y float32 [1, D]. Its signature claims a
// dynamic first dimension, as exported models often do.
func mixer(in map[string]tensor.Tensor) (map[string]tensor.Tensor, error) {
	x := in["x"]
	n, d := x.Shape[0], x.Shape[1]
	v := f32s(x)
	y := make([]float32, d)
	for r := range n {
		for k := range d {
			y[k] += v[r*d+k]
		}
	}
	return map[string]tensor.Tensor{"y": f32([]int64{1, d}, y)}, nil
}

func mixerSig() engine.Signature {
	return engine.Signature{
		Inputs:  []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{dyn, dyn}, DimNames: []string{"batch", "d"}}},
		Outputs: []engine.TensorSpec{{Name: "y", DType: tensor.Float32, Shape: []int64{dyn, dyn}, DimNames: []string{"batch", "d"}}},
	}
}

// fixedSig is rowwise with a fixed first dimension of 2.
func fixedSig() engine.Signature {
	return engine.Signature{
		Inputs: []engine.TensorSpec{{Name: "x", DType: tensor.Float32, Shape: []int64{2, dyn}, DimNames: []string{"", "d"}}},
		Outputs: []engine.TensorSpec{
			{Name: "y", DType: tensor.Float32, Shape: []int64{2, dyn}, DimNames: []string{"", "d"}},
			{Name: "tag", DType: tensor.Int64, Shape: []int64{2}, DimNames: []string{""}},
		},
	}
}

// taggedInput builds x [rows, dim] whose element (r, k) is id*1000+r*10+k,
// so an execution's input tells which rows of which request it holds.
func taggedInput(id, rows, dim int) map[string]tensor.Tensor {
	v := make([]float32, rows*dim)
	for r := range rows {
		for k := range dim {
			v[r*dim+k] = float32(id*1000 + r*10 + k)
		}
	}
	return map[string]tensor.Tensor{"x": f32([]int64{int64(rows), int64(dim)}, v)}
}

// requestsOf decodes which requests an execution of x holds, in order, and
// checks that each contributes its rows complete and in order.
func requestsOf(x tensor.Tensor) (ids []int, rows []int, err error) {
	if len(x.Shape) != 2 {
		return nil, nil, fmt.Errorf("x has shape %v", x.Shape)
	}
	n, d := int(x.Shape[0]), int(x.Shape[1])
	v := f32s(x)
	for r := range n {
		e := int(v[r*d])
		id, row := e/1000, (e%1000)/10
		if len(ids) > 0 && ids[len(ids)-1] == id {
			if row != rows[len(rows)-1] {
				return nil, nil, fmt.Errorf("row %d of the execution is row %d of request %d, want row %d", r, row, id, rows[len(rows)-1])
			}
			rows[len(rows)-1]++
			continue
		}
		if row != 0 {
			return nil, nil, fmt.Errorf("request %d starts at its row %d", id, row)
		}
		ids = append(ids, id)
		rows = append(rows, 1)
	}
	return ids, rows, nil
}
