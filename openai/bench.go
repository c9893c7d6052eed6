package openai

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserver/modelserver/llm"
)

// BenchOptions configure Bench. Zero fields take the documented defaults.
type BenchOptions struct {
	// Concurrency lists the numbers of concurrent clients to run. Default
	// 1, 8 and 32.
	Concurrency []int
	// RequestsPerClient is how many requests each client makes in a row at
	// every level. Default 4.
	RequestsPerClient int
	// PromptTokens is the prompt length; the prompt is a fixed token run.
	// Default 32.
	PromptTokens int
	// MaxTokens is every request's output length (generated past eos).
	// Default 64.
	MaxTokens int
	// Rounds alternates the two paths this many times at each level and
	// sums them, so load from elsewhere on the machine hits both alike.
	// Default 3.
	Rounds int
	// Handler serves POST /v1/completions for the API path, for example the
	// whole server with its middleware; it must serve the same model.
	// Default: an API of its own over the model, with only its routes.
	Handler http.Handler
}

// BenchResult is one path at one concurrency level.
type BenchResult struct {
	Path        string // "engine" (Model.Generate directly) or "api" (HTTP SSE)
	Concurrency int
	Requests    int           // over all rounds
	Tokens      int           // generated tokens
	Wall        time.Duration // summed over rounds
	TTFTp50     time.Duration
	TTFTp99     time.Duration
	ITLp50      time.Duration
	ITLp99      time.Duration
	// TokensPerSecond is generated tokens over the level's wall time.
	TokensPerSecond float64
}

func (r BenchResult) String() string {
	return fmt.Sprintf("%-6s c=%-3d requests=%-4d tokens=%-6d TTFT p50=%-10v p99=%-10v ITL p50=%-10v p99=%-10v %.1f tokens/s",
		r.Path, r.Concurrency, r.Requests, r.Tokens, r.TTFTp50.Round(time.Microsecond), r.TTFTp99.Round(time.Microsecond),
		r.ITLp50.Round(time.Microsecond), r.ITLp99.Round(time.Microsecond), r.TokensPerSecond)
}

// Bench measures m driven directly and through the API's
// /v1/completions over a loopback HTTP connection with SSE, at each
// concurrency level, engine first, so the two can be compared in one run.
// TTFT is from sending a request to its first token; ITL is between a
// sequence's consecutive tokens (API: consecutive SSE events).
func Bench(ctx context.Context, m Model, opts BenchOptions) ([]BenchResult, error) {
	if len(opts.Concurrency) == 0 {
		opts.Concurrency = []int{1, 8, 32}
	}
	if opts.RequestsPerClient <= 0 {
		opts.RequestsPerClient = 4
	}
	if opts.PromptTokens <= 0 {
		opts.PromptTokens = 32
	}
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = 64
	}
	if opts.Rounds <= 0 {
		opts.Rounds = 3
	}
	prompt := make([]int32, opts.PromptTokens)
	for i := range prompt {
		prompt[i] = int32(100 + i%(max(m.VocabSize()-100, 1)))
	}

	handler := opts.Handler
	if handler == nil {
		api := New(Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
		api.SetModel(m)
		mux := http.NewServeMux()
		for pattern, h := range api.Routes() {
			mux.Handle(pattern, h)
		}
		handler = mux
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: handler}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	body, err := marshalJSON(map[string]any{
		"prompt": prompt, "max_tokens": opts.MaxTokens, "ignore_eos": true, "temperature": 0,
		"stream": true, "stream_options": map[string]bool{"include_usage": true},
	})
	if err != nil {
		return nil, err
	}
	url := "http://" + ln.Addr().String() + "/v1/completions"

	engineOne := func(ctx context.Context, rec *benchRecorder) error {
		start := time.Now()
		events, err := m.Generate(ctx, llm.Request{Prompt: prompt, Params: llm.SamplingParams{MaxTokens: opts.MaxTokens, IgnoreEOS: true}})
		if err != nil {
			return err
		}
		var times []time.Time
		for ev := range events {
			if ev.Token >= 0 {
				times = append(times, time.Now())
			}
			if ev.Finish == llm.FinishError || ev.Finish == llm.FinishCancelled {
				return fmt.Errorf("sequence ended with %s: %v", ev.Finish, ev.Err)
			}
		}
		rec.add(start, times, len(times))
		return nil
	}
	apiOne := func(ctx context.Context, rec *benchRecorder) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("API answered %d: %s", resp.StatusCode, msg)
		}
		times, tokens, err := readBenchSSE(resp.Body)
		if err != nil {
			return err
		}
		rec.add(start, times, tokens)
		return nil
	}

	paths := []struct {
		name string
		one  func(context.Context, *benchRecorder) error
	}{{"engine", engineOne}, {"api", apiOne}}
	var results []BenchResult
	for _, c := range opts.Concurrency {
		recs := make([]benchRecorder, len(paths))
		for range opts.Rounds {
			for i, path := range paths {
				if err := benchLevel(ctx, c, opts.RequestsPerClient, path.one, &recs[i]); err != nil {
					return results, fmt.Errorf("%s at concurrency %d: %w", path.name, c, err)
				}
			}
		}
		for i, path := range paths {
			results = append(results, recs[i].result(path.name, c))
		}
	}
	return results, nil
}

// benchRecorder collects the timings of one level's requests.
type benchRecorder struct {
	mu     sync.Mutex // guards ttft, itl and tokens, which requests add to
	ttft   []time.Duration
	itl    []time.Duration
	tokens int
	// Written by benchLevel between runs.
	wall     time.Duration
	requests int
}

func (r *benchRecorder) add(start time.Time, times []time.Time, tokens int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens += tokens
	if len(times) == 0 {
		return
	}
	r.ttft = append(r.ttft, times[0].Sub(start))
	for i := 1; i < len(times); i++ {
		r.itl = append(r.itl, times[i].Sub(times[i-1]))
	}
}

// benchLevel runs clients in parallel, each making perClient requests in
// a row, and adds their timings and the wall time to rec.
func benchLevel(ctx context.Context, clients, perClient int, one func(context.Context, *benchRecorder) error, rec *benchRecorder) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for range perClient {
				if ctx.Err() != nil {
					return
				}
				if err := one(ctx, rec); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rec.wall += time.Since(start)
	rec.requests += clients * perClient
	return context.Cause(ctx)
}

func (r *benchRecorder) result(path string, clients int) BenchResult {
	return BenchResult{
		Path: path, Concurrency: clients, Requests: r.requests, Tokens: r.tokens, Wall: r.wall,
		TTFTp50: percentile(r.ttft, 50), TTFTp99: percentile(r.ttft, 99),
		ITLp50: percentile(r.itl, 50), ITLp99: percentile(r.itl, 99),
		TokensPerSecond: float64(r.tokens) / r.wall.Seconds(),
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, len(d)*p/100)]
}

// readBenchSSE reads a completions stream: the arrival time of each event
// that carries text, and the completion tokens of the usage chunk. Only
// the usage and error events are decoded, so the client, which shares the
// machine, takes as little CPU from the server as it can.
func readBenchSSE(body io.Reader) ([]time.Time, int, error) {
	var times []time.Time
	tokens := -1
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		switch {
		case !ok:
		case string(data) == "[DONE]":
			if tokens < 0 {
				return nil, 0, errors.New("the stream had no usage chunk")
			}
			return times, tokens, nil
		case bytes.HasPrefix(data, []byte(`{"error"`)):
			var e errorBody
			if err := json.Unmarshal(data, &e); err != nil {
				return nil, 0, err
			}
			return nil, 0, errors.New(e.Error.Message)
		case bytes.Contains(data, []byte(`"usage":{`)):
			var chunk struct {
				Usage usage `json:"usage"`
			}
			if err := json.Unmarshal(data, &chunk); err != nil {
				return nil, 0, err
			}
			tokens = chunk.Usage.CompletionTokens
		case !bytes.Contains(data, []byte(`"text":""`)):
			times = append(times, time.Now())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	return nil, 0, io.ErrUnexpectedEOF
}
