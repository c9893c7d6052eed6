package batching_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/modelserver/modelserver/batching"
	"github.com/modelserver/modelserver/engine"
	"github.com/modelserver/modelserver/tensor"
)

// TestScenarios runs the scripts in testdata/scenarios. A script drives a
// Batcher on a fake clock and a gated fake model (every execution blocks
// until the script finishes it) and states which requests form which
// execution. Commands, one per line ('#' starts a comment):
//
//	config key=value...   must come first. model=rowwise|mixer|fixed
//	                      (default rowwise), max_batch, delay, preferred=2,4,
//	                      concurrency, queue, timeout.
//	submit NAME ROWS [dim=D]  starts Predict with an x of ROWS×D (D default 2)
//	                      and waits until it is queued or has returned.
//	cancel NAME...        cancels the requests' contexts and waits for their
//	                      Predict to return context.Canceled.
//	advance DURATION      moves the fake clock.
//	waiting DURATION      the scheduler, having seen every change so far,
//	                      sleeps until now+DURATION, and has dispatched no
//	                      request beyond those named in earlier run lines.
//	idle                  the same, sleeping until woken (no timer).
//	run NAME...           the next execution holds exactly these requests, in
//	                      this order, each with all its rows. It stays blocked.
//	finish                lets the oldest blocked execution compute and return.
//	aborted               the oldest blocked execution returns because its
//	                      context was cancelled.
//	result NAME...        Predict returned outputs equal to an unbatched run.
//	error NAME KIND       Predict returned the error KIND: queue-full,
//	                      queue-timeout, closed, canceled, invalid.
//	depth N               the queue depth last reported is N.
//	running N             N executions are in flight.
//	observed key=N...     the Observer has seen N events of each kind:
//	                      dequeued, dropped, timeouts, result-dropped,
//	                      executions, unbatchable.
//	close                 starts Close; closing checks that it has not
//	                      returned (within 20ms); closed waits for it to.
//
// At the end every execution must have been named by a run line, every
// request's outcome asserted, no execution may have exceeded the configured
// concurrency or seen its inputs change, and no goroutine may outlive Close.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/scenarios")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runScenario(t, f)
		})
	}
}

type scenario struct {
	t         *testing.T
	file      string
	line      int
	clk       *batching.FakeClock
	model     *fakeModel
	ref       func(map[string]tensor.Tensor) (map[string]tensor.Tensor, error)
	rec       *recorder
	b         *batching.Batcher
	conc      int
	reqs      map[string]*pending
	byID      map[int]string
	nextID    int
	unclaimed []*call // executions started but not yet named by a run line
	blocked   []*call // executions named by run lines that have not returned
	consumed  int     // requests in executions named by run lines
	closeDone chan struct{}
	ignore    goleak.Option // goroutines that ran before the scenario
}

type pending struct {
	name     string
	inputs   map[string]tensor.Tensor
	rows     int
	cancel   context.CancelFunc
	done     chan struct{}
	out      map[string]tensor.Tensor
	err      error
	asserted bool
}

func runScenario(t *testing.T, file string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &scenario{t: t, file: file, reqs: map[string]*pending{}, byID: map[int]string{}, nextID: 1, ignore: goleak.IgnoreCurrent()}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s.line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if s.b == nil && fields[0] != "config" {
			s.fatalf("the first command must be config")
		}
		s.exec(fields[0], fields[1:])
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	s.end()
}

func (s *scenario) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d: %s", s.file, s.line, fmt.Sprintf(format, args...))
}

func (s *scenario) exec(cmd string, args []string) {
	s.t.Helper()
	switch cmd {
	case "config":
		s.config(args)
	case "submit":
		s.submit(args)
	case "cancel":
		for _, name := range args {
			p := s.req(name)
			p.cancel()
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				s.fatalf("Predict of %s did not return within 5s of its cancellation", name)
			}
			if !errors.Is(p.err, context.Canceled) {
				s.fatalf("cancelled %s: Predict returned %v, want context.Canceled", name, p.err)
			}
			p.asserted = true
		}
	case "advance":
		s.clk.Advance(s.duration(args))
	case "waiting", "idle":
		var d time.Duration
		if cmd == "waiting" {
			d = s.duration(args)
		}
		what := fmt.Sprintf("%s:%d: the scheduler sleeps until now+%v", s.file, s.line, d)
		if cmd == "idle" {
			what = fmt.Sprintf("%s:%d: the scheduler sleeps until woken", s.file, s.line)
		}
		eventually(s.t, what, func() bool {
			until, ok := s.b.Settled()
			if !ok {
				return false
			}
			if cmd == "idle" {
				return until.IsZero()
			}
			return until.Equal(s.clk.Now().Add(d))
		})
		var dequeued int
		s.rec.read(func(r *recorder) { dequeued = len(r.dequeued) })
		if dequeued != s.consumed {
			s.fatalf("%d requests were dispatched, but run lines named %d", dequeued, s.consumed)
		}
	case "run":
		s.run(args)
	case "finish", "aborted":
		if len(s.blocked) == 0 {
			s.fatalf("%s: no blocked execution", cmd)
		}
		c := s.blocked[0]
		s.blocked = s.blocked[1:]
		if cmd == "finish" {
			close(c.release)
		}
		select {
		case <-c.returned:
		case <-time.After(5 * time.Second):
			s.fatalf("%s: the execution did not return", cmd)
		}
		if cmd == "aborted" && !errors.Is(c.err, context.Canceled) {
			s.fatalf("aborted: the execution returned %v, want context.Canceled", c.err)
		}
	case "result":
		for _, name := range args {
			s.result(name)
		}
	case "error":
		if len(args) != 2 {
			s.fatalf("usage: error NAME KIND")
		}
		s.error(args[0], args[1])
	case "depth":
		want := s.int(args)
		var got int
		s.rec.read(func(r *recorder) { got = r.depth })
		if got != want {
			s.fatalf("queue depth %d, want %d", got, want)
		}
	case "running":
		want := s.int(args)
		if got, _, _, _ := s.model.stats(); got != want {
			s.fatalf("%d executions in flight, want %d", got, want)
		}
	case "observed":
		s.observed(args)
	case "close":
		s.closeDone = make(chan struct{})
		go func() {
			s.b.Close()
			close(s.closeDone)
		}()
		// Close fails the queued requests before it waits for executions.
		eventually(s.t, "Close has emptied the queue", func() bool {
			var d int
			s.rec.read(func(r *recorder) { d = r.depth })
			return d == 0
		})
	case "closing":
		select {
		case <-s.closeDone:
			s.fatalf("Close returned while an execution was in flight")
		case <-time.After(20 * time.Millisecond):
		}
	case "closed":
		select {
		case <-s.closeDone:
		case <-time.After(5 * time.Second):
			s.fatalf("Close did not return")
		}
	default:
		s.fatalf("unknown command %q", cmd)
	}
}

func (s *scenario) config(args []string) {
	if s.b != nil {
		s.fatalf("config given twice")
	}
	s.clk = batching.NewFakeClock()
	s.rec = &recorder{}
	s.conc = 1
	opts := []batching.Option{batching.WithClock(s.clk), batching.WithObserver(s.rec)}
	sig, fn := rowwiseSig(), rowwise
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			s.fatalf("config: %q is not key=value", a)
		}
		switch k {
		case "model":
			switch v {
			case "rowwise":
			case "mixer":
				sig, fn = mixerSig(), mixer
			case "fixed":
				sig = fixedSig()
			default:
				s.fatalf("unknown model %q", v)
			}
		case "max_batch":
			opts = append(opts, batching.WithMaxBatchSize(s.atoi(v)))
		case "delay":
			opts = append(opts, batching.WithMaxQueueDelay(s.parseDuration(v)))
		case "preferred":
			var sizes []int
			for _, p := range strings.Split(v, ",") {
				sizes = append(sizes, s.atoi(p))
			}
			opts = append(opts, batching.WithPreferredBatchSizes(sizes...))
		case "concurrency":
			s.conc = s.atoi(v)
			opts = append(opts, batching.WithPredictConcurrency(s.conc))
		case "queue":
			opts = append(opts, batching.WithMaxQueueSize(s.atoi(v)))
		case "timeout":
			opts = append(opts, batching.WithQueueTimeout(s.parseDuration(v)))
		default:
			s.fatalf("unknown config key %q", k)
		}
	}
	s.model = newFakeModel(sig, fn, true)
	s.ref = fn
	s.b = startBatcher(s.t, s.model, opts...)
}

func (s *scenario) submit(args []string) {
	if len(args) < 2 {
		s.fatalf("usage: submit NAME ROWS [dim=D]")
	}
	name, rows, dim := args[0], s.atoi(args[1]), 2
	for _, a := range args[2:] {
		v, ok := strings.CutPrefix(a, "dim=")
		if !ok {
			s.fatalf("submit: unknown argument %q", a)
		}
		dim = s.atoi(v)
	}
	if _, dup := s.reqs[name]; dup {
		s.fatalf("request %s submitted twice", name)
	}
	if rows >= 100 || dim >= 10 {
		s.fatalf("submit: rows must be below 100 and dim below 10 for tagging")
	}
	ctx, cancel := context.WithCancel(s.t.Context())
	p := &pending{name: name, inputs: taggedInput(s.nextID, rows, dim), rows: rows, cancel: cancel, done: make(chan struct{})}
	s.t.Cleanup(cancel)
	s.reqs[name], s.byID[s.nextID] = p, name
	s.nextID++
	var before int
	s.rec.read(func(r *recorder) { before = r.enqueues })
	go func() {
		defer close(p.done)
		p.out, p.err = s.b.Predict(ctx, p.inputs)
	}()
	eventually(s.t, fmt.Sprintf("%s:%d: %s is queued or answered", s.file, s.line, name), func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		var n int
		s.rec.read(func(r *recorder) { n = r.enqueues })
		return n > before
	})
}

func (s *scenario) run(names []string) {
	deadline := time.After(5 * time.Second)
	for {
		for i, c := range s.unclaimed {
			got, err := s.requestsIn(c)
			if err != nil {
				s.fatalf("run: %v", err)
			}
			if slices.Equal(got, names) {
				s.unclaimed = slices.Delete(s.unclaimed, i, i+1)
				s.blocked = append(s.blocked, c)
				s.consumed += len(names)
				return
			}
		}
		select {
		case c := <-s.model.started:
			s.unclaimed = append(s.unclaimed, c)
		case <-deadline:
			var seen [][]string
			for _, c := range s.unclaimed {
				got, _ := s.requestsIn(c)
				seen = append(seen, got)
			}
			s.fatalf("run: no execution holds %v; executions started and not yet named: %v", names, seen)
		}
	}
}

// requestsIn names the requests an execution holds, checking that each
// contributes all its rows. A zero-row execution is named by the zero-row
// requests submitted so far.
func (s *scenario) requestsIn(c *call) ([]string, error) {
	ids, rows, err := requestsOf(c.snapshot["x"])
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		var zero []string
		for name, p := range s.reqs {
			if p.rows == 0 {
				zero = append(zero, name)
			}
		}
		if len(zero) != 1 {
			return nil, fmt.Errorf("a zero-row execution, and %d zero-row requests to name it", len(zero))
		}
		return zero, nil
	}
	var got []string
	for i, id := range ids {
		name, ok := s.byID[id]
		if !ok {
			return nil, fmt.Errorf("execution holds unknown request id %d", id)
		}
		if rows[i] != s.reqs[name].rows {
			return nil, fmt.Errorf("execution holds %d rows of %s, which has %d", rows[i], name, s.reqs[name].rows)
		}
		got = append(got, name)
	}
	return got, nil
}

func (s *scenario) wait(p *pending) {
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		s.fatalf("Predict of %s did not return", p.name)
	}
	p.asserted = true
}

func (s *scenario) result(name string) {
	p := s.req(name)
	s.wait(p)
	if p.err != nil {
		s.fatalf("Predict of %s returned %v, want outputs", name, p.err)
	}
	want, err := s.ref(p.inputs)
	if err != nil {
		s.t.Fatal(err)
	}
	if diff := cmp.Diff(want, p.out); diff != "" {
		s.fatalf("outputs of %s differ from an unbatched run (-want +got):\n%s", name, diff)
	}
}

func (s *scenario) error(name, kind string) {
	want := map[string]error{
		"queue-full":    batching.ErrQueueFull,
		"queue-timeout": batching.ErrQueueTimeout,
		"closed":        batching.ErrClosed,
		"canceled":      context.Canceled,
		"invalid":       engine.ErrInvalidInput,
	}[kind]
	if want == nil {
		s.fatalf("unknown error kind %q", kind)
	}
	p := s.req(name)
	s.wait(p)
	if !errors.Is(p.err, want) {
		s.fatalf("Predict of %s returned %v, want %v", name, p.err, want)
	}
}

func (s *scenario) observed(args []string) {
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			s.fatalf("observed: %q is not key=N", a)
		}
		want := s.atoi(v)
		count := func(r *recorder) int {
			switch k {
			case "dequeued":
				return len(r.dequeued)
			case "dropped":
				return len(r.dropped)
			case "timeouts":
				n := 0
				for _, err := range r.dropped {
					if errors.Is(err, batching.ErrQueueTimeout) {
						n++
					}
				}
				return n
			case "result-dropped":
				return r.resultDropped
			case "executions":
				return len(r.batches)
			case "unbatchable":
				return len(r.unbatchable)
			}
			s.fatalf("observed: unknown event %q", k)
			return 0
		}
		// Executions are reported after they return, so allow them time.
		var got int
		deadline := time.Now().Add(5 * time.Second)
		for {
			s.rec.read(func(r *recorder) { got = count(r) })
			if got == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		if got != want {
			s.fatalf("observed %d %s events, want %d", got, k, want)
		}
	}
}

func (s *scenario) end() {
	t := s.t
	for _, c := range s.blocked {
		t.Errorf("%s: an execution was left blocked", s.file)
		close(c.release)
	}
	s.unclaimed = append(s.unclaimed, drain(s.model.started)...)
	if s.closeDone == nil {
		s.closeDone = make(chan struct{})
		go func() {
			s.b.Close()
			close(s.closeDone)
		}()
	}
	select {
	case <-s.closeDone:
	case <-time.After(5 * time.Second):
		t.Errorf("%s: Close did not return; an execution no run line named is blocked", s.file)
		s.model.stopOnce.Do(func() { close(s.model.stop) })
		<-s.closeDone
	}
	s.unclaimed = append(s.unclaimed, drain(s.model.started)...)
	for _, c := range s.unclaimed {
		ids, _, _ := requestsOf(c.snapshot["x"])
		t.Errorf("%s: an execution no run line named: request ids %v", s.file, ids)
	}
	for name, p := range s.reqs {
		if !p.asserted {
			t.Errorf("%s: the outcome of %s was never asserted", s.file, name)
		}
	}
	_, maxRunning, _, mutated := s.model.stats()
	if maxRunning > s.conc {
		t.Errorf("%s: %d executions ran at once, concurrency is %d", s.file, maxRunning, s.conc)
	}
	if len(mutated) > 0 {
		t.Errorf("%s: inputs %v changed during an execution", s.file, mutated)
	}
	goleak.VerifyNone(t, s.ignore)
}

func drain(ch chan *call) []*call {
	var calls []*call
	for {
		select {
		case c := <-ch:
			calls = append(calls, c)
		default:
			return calls
		}
	}
}

func (s *scenario) req(name string) *pending {
	p, ok := s.reqs[name]
	if !ok {
		s.fatalf("unknown request %q", name)
	}
	return p
}

func (s *scenario) atoi(v string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		s.fatalf("%q is not an integer", v)
	}
	return n
}

func (s *scenario) int(args []string) int {
	if len(args) != 1 {
		s.fatalf("want one integer argument")
	}
	return s.atoi(args[0])
}

func (s *scenario) parseDuration(v string) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil {
		s.fatalf("%v", err)
	}
	return d
}

func (s *scenario) duration(args []string) time.Duration {
	if len(args) != 1 {
		s.fatalf("want one duration argument")
	}
	return s.parseDuration(args[0])
}
