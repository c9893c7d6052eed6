package chattemplate

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/nikolalohinski/gonja/v2/builtins"
	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// environment is shared by every Template. It is built once from private
// copies of gonja's sets, so gonja's package-level defaults stay untouched,
// and it is only read afterwards (gonja's sets lock on every lookup).
var environment = newEnvironment()

func newEnvironment() *exec.Environment {
	filters := exec.NewFilterSet(map[string]exec.FilterFunction{}).Update(builtins.Filters)
	mustDo(filters.Replace("tojson", filterToJSON))
	mustDo(filters.Replace("items", filterItems))
	mustDo(filters.Register(indexFilter, filterIndex))

	structures := exec.NewControlStructureSet(map[string]parser.ControlStructureParser{}).Update(builtins.ControlStructures)
	mustDo(structures.Replace("for", withStepCheck(structures, "for")))
	mustDo(structures.Replace("macro", withStepCheck(structures, "macro")))
	for _, name := range []string{"include", "import", "from", "extends"} {
		mustDo(structures.Replace(name, rejected(name)))
	}

	globals := exec.EmptyContext().Update(builtins.GlobalFunctions)
	globals.Set("range", pyRange)

	methods := builtins.Methods
	methods.Dict = orderedDictMethods(builtins.Methods.Dict)

	return &exec.Environment{
		Context:           globals,
		Filters:           filters,
		Tests:             builtins.Tests,
		ControlStructures: structures,
		Methods:           methods,
	}
}

// mustDo panics at package initialisation when gonja's built-in names
// change under us; it never runs on user input.
func mustDo(err error) {
	if err != nil {
		panic(fmt.Sprintf("chattemplate: gonja environment: %v", err))
	}
}

// stateKey names the per-render state in the context; the space keeps
// templates from reading or shadowing it.
const stateKey = "chattemplate state"

// renderState is one Render call's mutable state.
type renderState struct {
	out         limitedBuilder
	steps       int
	maxSteps    int
	depthChecks int     // step calls that may check the depth
	raised      *string // raise_exception's message, once called
	limitErr    error   // the first step or nesting error
}

// raiseException is the template's raise_exception(message).
func (s *renderState) raiseException(args *exec.VarArgs) (string, error) {
	message := ""
	if len(args.Args) > 0 {
		message = args.Args[0].String()
	}
	if s.raised == nil {
		s.raised = &message
	}
	return "", errors.New(message)
}

// maxStackFrames bounds Go stack depth where templates can recurse (macro
// calls, recursive loops). One level of macro recursion costs about 14
// frames, so this allows about 250 levels: more than real templates use
// (they recurse over JSON-schema depth) and far below the point where the
// Go runtime aborts the process.
const maxStackFrames = 4000

const depthCheckInterval = 8

// step charges one loop iteration or macro call to the budget and, at
// macro entry, checks the nesting depth.
func (s *renderState) step(checkDepth bool) error {
	if s.limitErr != nil {
		return s.limitErr
	}
	s.steps++
	if s.steps > s.maxSteps {
		s.limitErr = fmt.Errorf("%w: more than %d loop iterations and macro calls", ErrRender, s.maxSteps)
		return s.limitErr
	}
	if !checkDepth {
		return nil
	}
	// Walking the stack costs its depth, so it is done on every
	// depthCheckInterval-th macro or recursive-loop entry; runaway
	// recursion overshoots the bound by at most that many levels.
	s.depthChecks++
	if s.depthChecks%depthCheckInterval == 0 {
		var pc [1]uintptr
		if runtime.Callers(maxStackFrames, pc[:]) > 0 {
			s.limitErr = fmt.Errorf("%w: macro or loop recursion too deep", ErrRender)
			return s.limitErr
		}
	}
	return nil
}

// withStepCheck wraps gonja's parser for a body-carrying statement so that
// each execution of the body starts with a stepNode.
func withStepCheck(structures *exec.ControlStructureSet, name string) parser.ControlStructureParser {
	parse, _ := structures.Get(name)
	return func(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
		structure, err := parse(p, args)
		if err != nil {
			return nil, err
		}
		var body *nodes.Wrapper
		checkDepth := false
		switch s := structure.(type) {
		case *controlStructures.ForControlStructure:
			body, checkDepth = s.BodyWrapper, s.Recursive
		case *controlStructures.MacroControlStructure:
			body, checkDepth = s.Wrapper, true
		}
		if body != nil {
			node := stepNode{location: body, checkDepth: checkDepth}
			check := &nodes.ControlStructureBlock{Location: body.Location, Name: "step", ControlStructure: node}
			body.Nodes = append([]nodes.Node{check}, body.Nodes...)
		}
		return structure, nil
	}
}

// stepNode is placed first in every loop and macro body; rendering it
// charges the render's step budget.
type stepNode struct {
	location   *nodes.Wrapper
	checkDepth bool // the body can recurse: a macro or a recursive loop
}

func (n stepNode) Position() *tokens.Token { return n.location.Position() }
func (n stepNode) String() string          { return "step" }

// Execute implements exec.ControlStructure.
func (n stepNode) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	state, ok := r.Environment.Context.Get(stateKey)
	if !ok {
		return errors.New("render state missing")
	}
	return state.(*renderState).step(n.checkDepth)
}

// rejected refuses statements that load other templates.
func rejected(name string) parser.ControlStructureParser {
	return func(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
		return nil, fmt.Errorf("'%s' is not supported in chat templates", name)
	}
}

// limitedBuilder collects output and fails once it would exceed limit.
type limitedBuilder struct {
	strings.Builder
	limit    int
	exceeded bool
}

var errOutputLimit = errors.New("output limit reached")

func (b *limitedBuilder) Write(p []byte) (int, error) {
	if b.exceeded || b.Len()+len(p) > b.limit {
		b.exceeded = true
		return 0, errOutputLimit
	}
	return b.Builder.Write(p)
}

func (b *limitedBuilder) WriteString(s string) (int, error) {
	if b.exceeded || b.Len()+len(s) > b.limit {
		b.exceeded = true
		return 0, errOutputLimit
	}
	return b.Builder.WriteString(s)
}

// pyRange is Python's range() as a list, capped like Jinja's sandbox.
func pyRange(va *exec.VarArgs) ([]int, error) {
	args := make([]int, len(va.Args))
	for i, a := range va.Args {
		if !a.IsInteger() {
			return nil, fmt.Errorf("range() argument %d is not an integer: %s", i+1, a.String())
		}
		args[i] = a.Integer()
	}
	start, stop, step := 0, 0, 1
	switch len(args) {
	case 1:
		stop = args[0]
	case 2:
		start, stop = args[0], args[1]
	case 3:
		start, stop, step = args[0], args[1], args[2]
	default:
		return nil, fmt.Errorf("range expected 1 to 3 integer arguments, got %d", len(args))
	}
	if step == 0 {
		return nil, errors.New("range() arg 3 must not be zero")
	}
	n := 0
	if step > 0 && stop > start {
		n = (stop - start + step - 1) / step
	} else if step < 0 && stop < start {
		n = (start - stop - step - 1) / -step
	}
	if n > maxRange {
		return nil, fmt.Errorf("range too big: more than %d items", maxRange)
	}
	out := make([]int, n)
	for i := range out {
		out[i] = start + i*step
	}
	return out, nil
}

// filterToJSON is transformers' tojson: json.dumps(ensure_ascii=False,
// indent=indent).
func filterToJSON(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	indent := -1
	if v, ok := params.KwArgs["indent"]; ok && !v.IsNil() {
		indent = v.Integer()
	} else if len(params.Args) > 0 {
		indent = params.Args[0].Integer()
	}
	out, err := pyJSON(in.Interface(), indent)
	if err != nil {
		return exec.AsValue(err)
	}
	return exec.AsSafeValue(out)
}

// filterItems is |items keeping an ordered dict's order.
func filterItems(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if d, ok := in.Interface().(*exec.Dict); ok {
		return exec.AsValue(dictItems(d))
	}
	items, _ := builtins.Filters.Get("items")
	return items(e, in, params)
}

func dictItems(d *exec.Dict) []any {
	out := make([]any, len(d.Pairs))
	for i, p := range d.Pairs {
		out[i] = []any{p.Key.Interface(), p.Value.Interface()}
	}
	return out
}

// orderedDictMethods returns gonja's dict methods with keys(), values()
// and items() keeping an ordered dict's insertion order (gonja sorts).
func orderedDictMethods(base *exec.MethodSet[map[string]any]) *exec.MethodSet[map[string]any] {
	methods := map[string]exec.Method[map[string]any]{}
	for _, name := range []string{"keys", "values", "items", "get", "pop", "setdefault", "update", "copy", "clear"} {
		if m, ok := base.Get(name); ok {
			methods[name] = m
		}
	}
	ordered := func(name string, pick func(*exec.Pair) any) {
		sorted, ok := methods[name]
		if !ok {
			mustDo(fmt.Errorf("dict method %s() missing", name))
		}
		methods[name] = func(self map[string]any, selfValue *exec.Value, args *exec.VarArgs) (any, error) {
			d, ok := selfValue.Interface().(*exec.Dict)
			if !ok {
				return sorted(self, selfValue, args)
			}
			out := make([]any, len(d.Pairs))
			for i, p := range d.Pairs {
				out[i] = pick(p)
			}
			return out, nil
		}
	}
	ordered("keys", func(p *exec.Pair) any { return p.Key.Interface() })
	ordered("values", func(p *exec.Pair) any { return p.Value.Interface() })
	ordered("items", func(p *exec.Pair) any { return []any{p.Key.Interface(), p.Value.Interface()} })
	return exec.NewMethodSet(methods)
}
