package openai

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// volatile matches the fields that change per response: ids and created.
var volatile = regexp.MustCompile(`"(id|created)":("[a-z]+-[0-9a-f]+"|[0-9]+)`)

// TestGoldenWire compares whole answers, byte for byte apart from ids and
// timestamps, with testdata/golden. Regenerate with go test -run
// TestGoldenWire -update after a deliberate wire change.
func TestGoldenWire(t *testing.T) {
	for _, tc := range []struct{ name, path, body string }{
		{"chat", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":3,"logprobs":true,"top_logprobs":1}`},
		{"chat_stream", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true},"seed":1}`},
		{"chat_stream_stop", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"stream":true,"stop":["lo"]}`},
		{"completion", "/v1/completions", `{"prompt":["a","b"],"logprobs":1}`},
		{"completion_stream", "/v1/completions", `{"prompt":"a","stream":true,"max_tokens":2,"logprobs":0}`},
		{"error", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"top_p":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, newFakeModel("Hello"))
			resp, body := ts.post(t, tc.path, tc.body)
			got := []byte(resp.Status + "\n" + resp.Header.Get("Content-Type") + "\n\n")
			got = append(got, volatile.ReplaceAll(body, []byte(`"$1":"…"`))...)
			path := filepath.Join("testdata", "golden", tc.name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGoldenWire -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from %s (go test -run TestGoldenWire -update after a deliberate change):\n got: %s\nwant: %s", tc.name, path, got, want)
			}
		})
	}
}
