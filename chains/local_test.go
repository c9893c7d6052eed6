package chains_test

import (
	"context"
	"errors"
	"iter"
	"slices"
	"strings"
	"testing"

	"github.com/modelserver/modelserver/chains"
	"github.com/modelserver/modelserver/tensor"
)

func localTop(t *testing.T, chainlets ...any) *chains.Dep[MidInput, LeafOutput] {
	t.Helper()
	c, err := chains.New(chainlets...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := chains.RunLocal[MidInput, LeafOutput](c, chains.LocalOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

func TestLocalRunsTheWholeChain(t *testing.T) {
	leaf := &Leaf{FailFirst: 2}
	top := localTop(t, &Top{}, &Mid{}, leaf)
	got, err := top.RunRemote(testContext(t), MidInput{Value: 4, Array: float32s(0.5, 1), Fail: "transient"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Value != 8 || !slices.Equal(floatsOf(got.Doubled), []float32{1, 2}) || leaf.calls.Load() != 3 {
		t.Errorf("got %+v after %d Leaf calls; want value 8, doubled [1 2], 3 calls (retries work locally)", got, leaf.calls.Load())
	}
}

func TestLocalErrorsMatchRemote(t *testing.T) {
	top := localTop(t, &Top{}, &Mid{}, &Leaf{})
	_, err := top.RunRemote(testContext(t), MidInput{Value: 7, Array: float32s(1), Fail: "value"})
	if err == nil || !wantTree.MatchString(err.Error()) {
		t.Errorf("local error:\n%v\nwant the same tree as remote mode:\n%s", err, wantTree)
	}
}

func TestLocalSerializationErrorsShowUp(t *testing.T) {
	// A zero tensor cannot be serialized: local mode fails where remote
	// mode would, in Mid's answer.
	mid := &Mid{Leaf: chains.Mock[LeafInput, LeafOutput](zeroLeaf{})}
	top := localTop(t, &Top{}, mid, &Leaf{})
	_, err := top.RunRemote(testContext(t), MidInput{Value: 1, Array: float32s(1)})
	if err == nil || !strings.Contains(err.Error(), "chains: serialization: doubled: invalid ndarray") {
		t.Errorf("error %v, want the serialization error of Mid's answer", err)
	}
}

type zeroLeaf struct{}

func (zeroLeaf) RunRemote(context.Context, LeafInput) (LeafOutput, error) {
	return LeafOutput{}, nil
}

// fakeLeaf is a mock with Leaf's RunRemote.
type fakeLeaf struct{}

func (fakeLeaf) RunRemote(_ context.Context, in LeafInput) (LeafOutput, error) {
	return LeafOutput{Value: -in.Value, Doubled: in.Array}, nil
}

func TestLocalWithMock(t *testing.T) {
	mid := &Mid{Leaf: chains.Mock[LeafInput, LeafOutput](fakeLeaf{})}
	top := localTop(t, &Top{}, mid, &Leaf{})
	got, err := top.RunRemote(testContext(t), MidInput{Value: 3, Array: float32s(1)})
	if err != nil || got.Value != -3 {
		t.Errorf("RunRemote = %+v, %v; want the mock's -3", got, err)
	}
}

func TestLocalModelChainletNeedsMockOrEndpoint(t *testing.T) {
	c, err := chains.New(&Proxy{}, chains.ModelChainlet{Name: "Model", Model: "phi3-tiny"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = chains.RunLocal[ProxyInput, string](c, chains.LocalOptions{})
	if !errors.Is(err, chains.ErrMissingEndpoint) || !strings.Contains(err.Error(), "Chainlet Proxy needs Model") {
		t.Errorf("RunLocal error %v, want ErrMissingEndpoint naming Model", err)
	}
	_, err = chains.RunLocal[ProxyInput, int](c, chains.LocalOptions{})
	if err == nil || !strings.Contains(err.Error(), "RunLocal[chains_test.ProxyInput, int] but the entrypoint Proxy.RunRemote takes chains_test.ProxyInput and returns string") {
		t.Errorf("RunLocal with the wrong types: %v", err)
	}
}

func TestUnboundDep(t *testing.T) {
	var d chains.Dep[LeafInput, LeafOutput]
	if _, err := d.RunRemote(testContext(t), LeafInput{}); !errors.Is(err, chains.ErrNotBound) {
		t.Errorf("unbound Dep: %v, want ErrNotBound", err)
	}
}

// Chainlets with deliberate definition errors, for New's validation.
type (
	NoRun     struct{ chains.Entrypoint }
	WrongArgs struct{}
	NotStruct struct{}
	WithChan  struct{}
	WithFunc  struct{}
	BadKeys   struct{}
	CycleA    struct {
		chains.Entrypoint
		B chains.Dep[Empty, int] `chains:"CycleB"`
	}
	CycleB struct {
		A chains.Dep[Empty, int] `chains:"CycleA"`
	}
	Orphan struct {
		chains.Entrypoint
		Missing chains.Dep[Empty, int] `chains:"Nowhere"`
	}
	Mismatch struct {
		chains.Entrypoint
		Leaf chains.Dep[LeafInput, string] `chains:"Leaf"`
	}
	BadTag struct {
		chains.Entrypoint
		Leaf chains.Dep[LeafInput, LeafOutput] `chains:"Leaf,retries=0,color=red"`
	}
	NoTag struct {
		chains.Entrypoint
		Leaf chains.Dep[LeafInput, LeafOutput]
	}
	Hidden struct {
		chains.Entrypoint
		leaf chains.Dep[LeafInput, LeafOutput] `chains:"Leaf"`
	}
	Empty struct{}
)

func (NoRun) Run(context.Context, Empty) (int, error)                              { return 0, nil }
func (WrongArgs) RunRemote(n int) int                                              { return n }
func (NotStruct) RunRemote(context.Context, int) (int, error)                      { return 0, nil }
func (WithChan) RunRemote(context.Context, Empty) (chan int, error)                { return nil, nil }
func (WithFunc) RunRemote(context.Context, struct{ F func() }) (int, error)        { return 0, nil }
func (BadKeys) RunRemote(context.Context, struct{ M map[int]string }) (int, error) { return 0, nil }
func (*CycleA) RunRemote(context.Context, Empty) (int, error)                      { return 0, nil }
func (*CycleB) RunRemote(context.Context, Empty) (int, error)                      { return 0, nil }
func (*Orphan) RunRemote(context.Context, Empty) (int, error)                      { return 0, nil }
func (*Mismatch) RunRemote(context.Context, Empty) (int, error)                    { return 0, nil }
func (*BadTag) RunRemote(context.Context, Empty) (int, error)                      { return 0, nil }
func (*NoTag) RunRemote(context.Context, Empty) (int, error)                       { return 0, nil }
func (*Hidden) RunRemote(context.Context, Empty) (int, error)                      { return 0, nil }

// The unexported dependency is what New must refuse; this keeps it used.
var _ = Hidden{}.leaf

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name      string
		chainlets []any
		want      []string
	}{
		{"no entrypoint", []any{&Mid{}, &Leaf{}}, []string{"no entrypoint: embed chains.Entrypoint in exactly one Chainlet"}},
		{"several entrypoints", []any{&Top{}, &Proxy{}, &Mid{}, &Leaf{}, chains.ModelChainlet{Name: "Model"}}, []string{"several entrypoints (Top, Proxy)"}},
		{"no RunRemote", []any{&NoRun{}}, []string{"Chainlet NoRun has no exported method RunRemote"}},
		{"wrong shape", []any{&Top{}, &Mid{}, &Leaf{}, &WrongArgs{}}, []string{"WrongArgs.RunRemote is func(int) int; want func(ctx context.Context, in In) (Out, error)"}},
		{"input not a struct", []any{&Top{}, &Mid{}, &Leaf{}, &NotStruct{}}, []string{"NotStruct.RunRemote is func(context.Context, int) (int, error)"}},
		{"channel output", []any{&Top{}, &Mid{}, &Leaf{}, &WithChan{}}, []string{"WithChan.RunRemote output: chan int: a chan cannot be serialized"}},
		{"func field", []any{&Top{}, &Mid{}, &Leaf{}, &WithFunc{}}, []string{"WithFunc.RunRemote input: struct { F func() }.F: a func cannot be serialized"}},
		{"int map keys", []any{&Top{}, &Mid{}, &Leaf{}, &BadKeys{}}, []string{"map keys of type int cannot be serialized"}},
		{"cycle", []any{&CycleA{}, &CycleB{}}, []string{"dependency cycle: CycleA → CycleB → CycleA"}},
		{"unregistered dependency", []any{&Orphan{}}, []string{"dependency Orphan.Missing: Nowhere is not a registered Chainlet (registered: Orphan)"}},
		{"type mismatch", []any{&Mismatch{}, &Leaf{}}, []string{"dependency Mismatch.Leaf is Dep[chains_test.LeafInput, string] but Leaf.RunRemote takes chains_test.LeafInput and returns chains_test.LeafOutput"}},
		{"bad tag", []any{&BadTag{}, &Leaf{}}, []string{`dependency BadTag.Leaf: option retries in tag "Leaf,retries=0,color=red": must be at least 1`}},
		{"no tag", []any{&NoTag{}, &Leaf{}}, []string{`dependency NoTag.Leaf: missing tag chains:"TargetChainlet[,options]"`}},
		{"unexported dep", []any{&Hidden{}, &Leaf{}}, []string{"dependency Hidden.leaf must be an exported field"}},
		{"not a pointer", []any{Top{}}, []string{"chains_test.Top is not a Chainlet: pass a non-nil pointer to a struct"}},
		{"twice", []any{&Top{}, &Top{}, &Mid{}, &Leaf{}}, []string{"Chainlet Top is registered twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := chains.New(tt.chainlets...)
			if !errors.Is(err, chains.ErrInvalidChain) {
				t.Fatalf("New = %v, want ErrInvalidChain", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New error:\n%v\nlacks %q", err, w)
				}
			}
		})
	}
}

// Streams of any item type, and tensors, are valid Chainlet types.
type ValidTypes struct{ chains.Entrypoint }

func (ValidTypes) RunRemote(context.Context, struct {
	T tensor.Tensor     `json:"t"`
	B []byte            `json:"b"`
	M map[string][]*int `json:"m"`
	A any               `json:"a"`
}) (iter.Seq2[[]byte, error], error) {
	return nil, nil
}

func TestNewAcceptsValidTypes(t *testing.T) {
	if _, err := chains.New(&ValidTypes{}); err != nil {
		t.Error(err)
	}
}
