package openai

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBench(t *testing.T) {
	m := newFakeModel("xyz")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, err := Bench(ctx, m, BenchOptions{Concurrency: []int{1, 3}, RequestsPerClient: 2, PromptTokens: 5, MaxTokens: 7, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, r := range results {
		paths = append(paths, r.Path)
		if r.Requests != 2*2*r.Concurrency || r.Tokens != 7*r.Requests || r.TokensPerSecond <= 0 || r.TTFTp99 < r.TTFTp50 || r.ITLp99 < r.ITLp50 {
			t.Errorf("result %v", r)
		}
	}
	if got := strings.Join(paths, ","); got != "engine,api,engine,api" {
		t.Errorf("paths %s, want engine then api per level", got)
	}
	for _, req := range m.lastRequests() {
		if len(req.Prompt) != 5 || req.Params.MaxTokens != 7 || !req.Params.IgnoreEOS {
			t.Fatalf("bench request %+v", req)
		}
	}
	m.wg.Wait()
}

// BenchmarkAPIStream measures the API's own cost per streamed token: a
// model that generates instantly, 64 tokens per request over loopback
// HTTP with SSE.
func BenchmarkAPIStream(b *testing.B) {
	m := newFakeModel(strings.Repeat("a", 64))
	ts := newTestServer(b, m)
	body := `{"prompt":"hello","max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}`
	b.ReportAllocs()
	for b.Loop() {
		resp, err := http.Post(ts.srv.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, tokens, err := readBenchSSE(resp.Body)
		resp.Body.Close()
		if err != nil || tokens != 64 {
			b.Fatalf("read %d tokens: %v", tokens, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/token")
}
