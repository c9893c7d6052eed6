package chains

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Entrypoint marks the entrypoint Chainlet of a Chain: embed it in the
// Chainlet's struct. A Chain has exactly one.
type Entrypoint struct{}

// RemoteConfig describes how a Chainlet is deployed. A Chainlet declares it
// with a method RemoteConfig() RemoteConfig; the zero value is a CPU
// Chainlet.
type RemoteConfig struct {
	// Accelerator is Truss's resources.accelerator, e.g. "A10G" or "H100:2";
	// a Chainlet with one is built on the CUDA image (Dockerfile.cuda).
	Accelerator string
	// Env is extra environment for the Chainlet's container.
	Env map[string]string
}

// ModelChainlet is a Chainlet that is a model served by modelserver itself
// (an ONNX model directory or an LLM), callable from Go Chainlets as a
// dependency through the Truss predict route. Register it with New next to
// the Go Chainlets.
type ModelChainlet struct {
	// Name is the Chainlet's name, which dependencies refer to.
	Name string
	// Model is modelserver's --model argument inside the container.
	Model string
	// Args are more modelserver flags.
	Args []string
	// Accelerator as in RemoteConfig.
	Accelerator string
	// LLM makes callers read the answer tolerantly (see Dep): a JSON
	// string, or an object with "text" or OpenAI-style "choices".
	LLM bool
}

// DepOptions are a dependency's call options, written in the field's tag:
//
//	SayHello chains.Dep[SayHelloInput, string] `chains:"SayHello,retries=3,timeout=30s,binary,concurrency=10"`
type DepOptions struct {
	// Retries is the number of attempts in total, as Truss counts them
	// (retries=1, the default, means no retry). Every failure is retried,
	// HTTP errors and timeouts included, immediately (no backoff); a stream
	// is retried only until its response headers arrive.
	Retries int
	// Timeout bounds one attempt, reading the answer included. Default 600 s.
	Timeout time.Duration
	// Binary sends msgpack (ndarrays as msgpack_numpy) instead of JSON.
	Binary bool
	// Concurrency caps this Chainlet's calls in flight to the dependency.
	// Default 300.
	Concurrency int
}

// Defaults of DepOptions, those of Truss's RPCOptions.
const (
	DefaultRetries     = 1
	DefaultTimeout     = 600 * time.Second
	DefaultConcurrency = 300
)

// Chain is a validated set of Chainlets. Build it once with New; it is then
// safe for concurrent use.
type Chain struct {
	chainlets []*chainlet
	byName    map[string]*chainlet
	entry     *chainlet
}

type chainlet struct {
	name   string
	value  reflect.Value // *T of a Go Chainlet; invalid for a model
	run    reflect.Value // bound RunRemote
	in     reflect.Type
	out    reflect.Type
	stream streamKind
	item   reflect.Type
	deps   []*depSlot
	config RemoteConfig
	model  *ModelChainlet
}

type depSlot struct {
	field  string // "HelloAll.SayHello"
	target string
	opts   DepOptions
	dep    depBinder
}

var (
	entrypointType = reflect.TypeFor[Entrypoint]()
	modelType      = reflect.TypeFor[ModelChainlet]()
	ctxType        = reflect.TypeFor[context.Context]()
	depBinderType  = reflect.TypeFor[depBinder]()
)

type remoteConfigurer interface{ RemoteConfig() RemoteConfig }

// New validates and registers the Chainlets of a Chain. Each argument is a
// pointer to a Go Chainlet struct or a ModelChainlet. A Go Chainlet has one
// method RunRemote(ctx context.Context, in In) (Out, error): In is a struct
// whose json field names are the argument names on the wire, Out is any
// serializable value, or iter.Seq2[T, error] for a streaming Chainlet (T a
// string, []byte or a JSON-serializable item type). Its dependencies are
// exported fields of type Dep[In, Out] tagged `chains:"Target,options"`.
//
// Every problem found is reported, each wrapped in ErrInvalidChain: no or
// several entrypoints, RunRemote missing or of the wrong shape, types that
// cannot be serialized, dependencies on unregistered Chainlets or with types
// that differ from the target's RunRemote, bad tags, and dependency cycles.
func New(chainlets ...any) (*Chain, error) {
	c := &Chain{byName: make(map[string]*chainlet)}
	var problems []error
	var entries []string
	for _, v := range chainlets {
		cl, isEntry, err := inspect(v)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if _, dup := c.byName[cl.name]; dup {
			problems = append(problems, fmt.Errorf("Chainlet %s is registered twice", cl.name))
			continue
		}
		c.byName[cl.name] = cl
		c.chainlets = append(c.chainlets, cl)
		if isEntry {
			entries = append(entries, cl.name)
			c.entry = cl
		}
	}
	switch {
	case len(entries) == 0:
		problems = append(problems, errors.New("no entrypoint: embed chains.Entrypoint in exactly one Chainlet"))
	case len(entries) > 1:
		problems = append(problems, fmt.Errorf("several entrypoints (%s): embed chains.Entrypoint in exactly one Chainlet", strings.Join(entries, ", ")))
	}
	for _, cl := range c.chainlets {
		for _, d := range cl.deps {
			if err := c.checkDep(d); err != nil {
				problems = append(problems, err)
			}
		}
	}
	if cycle := c.findCycle(); cycle != nil {
		problems = append(problems, fmt.Errorf("dependency cycle: %s", strings.Join(cycle, " → ")))
	}
	if len(problems) > 0 {
		wrapped := make([]error, len(problems))
		for i, p := range problems {
			wrapped[i] = fmt.Errorf("%w: %w", ErrInvalidChain, p)
		}
		return nil, errors.Join(wrapped...)
	}
	return c, nil
}

// Entrypoint returns the name of the entrypoint Chainlet.
func (c *Chain) Entrypoint() string { return c.entry.name }

// Names returns the Chainlets' names in registration order.
func (c *Chain) Names() []string {
	out := make([]string, len(c.chainlets))
	for i, cl := range c.chainlets {
		out[i] = cl.name
	}
	return out
}

func inspect(v any) (*chainlet, bool, error) {
	if m, ok := v.(ModelChainlet); ok {
		if m.Name == "" {
			return nil, false, errors.New("ModelChainlet without a Name")
		}
		return &chainlet{name: m.Name, model: &m, config: RemoteConfig{Accelerator: m.Accelerator}}, false, nil
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct || rv.IsNil() {
		return nil, false, fmt.Errorf("%T is not a Chainlet: pass a non-nil pointer to a struct, or a chains.ModelChainlet", v)
	}
	st := rv.Elem().Type()
	cl := &chainlet{name: st.Name(), value: rv}
	if cl.name == "" {
		return nil, false, fmt.Errorf("%T is not a Chainlet: its struct type needs a name", v)
	}
	var problems []error
	if err := cl.inspectRunRemote(); err != nil {
		problems = append(problems, err)
	}
	isEntry := false
	for i := range st.NumField() {
		f := st.Field(i)
		if f.Type == entrypointType && f.Anonymous {
			isEntry = true
			continue
		}
		if !reflect.PointerTo(f.Type).Implements(depBinderType) {
			continue
		}
		field := cl.name + "." + f.Name
		if !f.IsExported() {
			problems = append(problems, fmt.Errorf("dependency %s must be an exported field", field))
			continue
		}
		target, opts, err := parseDepTag(f.Tag.Get("chains"))
		if err != nil {
			problems = append(problems, fmt.Errorf("dependency %s: %w", field, err))
			continue
		}
		cl.deps = append(cl.deps, &depSlot{field: field, target: target, opts: opts, dep: rv.Elem().Field(i).Addr().Interface().(depBinder)})
	}
	if rc, ok := v.(remoteConfigurer); ok {
		cl.config = rc.RemoteConfig()
	}
	if len(problems) > 0 {
		return nil, false, errors.Join(problems...)
	}
	return cl, isEntry, nil
}

func (cl *chainlet) inspectRunRemote() error {
	m := cl.value.MethodByName("RunRemote")
	if !m.IsValid() {
		return fmt.Errorf("Chainlet %s has no exported method RunRemote(ctx context.Context, in In) (Out, error)", cl.name)
	}
	t := m.Type()
	if t.NumIn() != 2 || t.In(0) != ctxType || t.NumOut() != 2 || t.Out(1) != errorType || t.In(1).Kind() != reflect.Struct {
		return fmt.Errorf("%s.RunRemote is %s; want func(ctx context.Context, in In) (Out, error) with In a struct of the arguments", cl.name, t)
	}
	cl.run, cl.in, cl.out = m, t.In(1), t.Out(0)
	if err := checkSerializable(cl.in); err != nil {
		return fmt.Errorf("%s.RunRemote input: %w", cl.name, err)
	}
	cl.stream, cl.item = streamOf(cl.out)
	if cl.stream == streamItems {
		if err := checkSerializable(cl.item); err != nil {
			return fmt.Errorf("%s.RunRemote stream item: %w", cl.name, err)
		}
		return nil
	}
	if cl.stream == notStream {
		if err := checkSerializable(cl.out); err != nil {
			return fmt.Errorf("%s.RunRemote output: %w", cl.name, err)
		}
	}
	return nil
}

func parseDepTag(tag string) (string, DepOptions, error) {
	opts := DepOptions{Retries: DefaultRetries, Timeout: DefaultTimeout, Concurrency: DefaultConcurrency}
	if tag == "" {
		return "", opts, errors.New(`missing tag chains:"TargetChainlet[,options]"`)
	}
	parts := strings.Split(tag, ",")
	target := strings.TrimSpace(parts[0])
	if target == "" {
		return "", opts, fmt.Errorf("tag %q names no target Chainlet", tag)
	}
	for _, p := range parts[1:] {
		key, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		var err error
		switch key {
		case "retries":
			opts.Retries, err = positiveInt(val)
		case "concurrency":
			opts.Concurrency, err = positiveInt(val)
		case "timeout":
			opts.Timeout, err = time.ParseDuration(val)
			if err == nil && opts.Timeout <= 0 {
				err = errors.New("must be positive")
			}
		case "binary":
			opts.Binary = true
			if val != "" {
				opts.Binary, err = strconv.ParseBool(val)
			}
		default:
			return "", opts, fmt.Errorf("unknown option %q in tag %q (known: retries, timeout, binary, concurrency)", key, tag)
		}
		if err != nil {
			return "", opts, fmt.Errorf("option %s in tag %q: %w", key, tag, err)
		}
	}
	return target, opts, nil
}

func positiveInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err == nil && n < 1 {
		err = errors.New("must be at least 1")
	}
	return n, err
}

func (c *Chain) checkDep(d *depSlot) error {
	target, ok := c.byName[d.target]
	if !ok {
		return fmt.Errorf("dependency %s: %s is not a registered Chainlet (registered: %s)", d.field, d.target, strings.Join(c.Names(), ", "))
	}
	if target.model != nil {
		return nil
	}
	in, out := d.dep.depTypes()
	if in != target.in || out != target.out {
		return fmt.Errorf("dependency %s is Dep[%s, %s] but %s.RunRemote takes %s and returns %s", d.field, in, out, target.name, target.in, target.out)
	}
	return nil
}

// findCycle returns the Chainlet names along one dependency cycle, or nil.
func (c *Chain) findCycle() []string {
	const (
		unvisited = iota
		onPath
		done
	)
	state := make(map[string]int)
	var path []string
	var visit func(name string) []string
	visit = func(name string) []string {
		switch state[name] {
		case onPath:
			i := slices.Index(path, name)
			return append(slices.Clone(path[i:]), name)
		case done:
			return nil
		}
		state[name] = onPath
		path = append(path, name)
		if cl, ok := c.byName[name]; ok {
			for _, d := range cl.deps {
				if cycle := visit(d.target); cycle != nil {
					return cycle
				}
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		return nil
	}
	for _, cl := range c.chainlets {
		if cycle := visit(cl.name); cycle != nil {
			return cycle
		}
	}
	return nil
}
