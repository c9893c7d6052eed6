package chains_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelserver/modelserver/internal/syncbuf"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"go.yaml.in/yaml/v3"

	"github.com/modelserver/modelserver/chains"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/deploy")

// Poet is a GPU Chainlet that calls an LLM model Chainlet.
type Poet struct {
	chains.Entrypoint
	LLM chains.Dep[ProxyInput, string]   `chains:"LLM,retries=2"`
	Mid chains.Dep[MidInput, LeafOutput] `chains:"Mid"`
}

func (*Poet) RunRemote(context.Context, ProxyInput) (string, error) { return "", nil }

func (*Poet) RemoteConfig() chains.RemoteConfig {
	return chains.RemoteConfig{Accelerator: "A10G", Env: map[string]string{"POET_STYLE": "haiku"}}
}

func deployChain(t *testing.T) *chains.Chain {
	c, err := chains.New(&Mid{}, &Poet{}, &Leaf{},
		chains.ModelChainlet{Name: "LLM", Model: "phi3-tiny", Accelerator: "H100:2", LLM: true, Args: []string{"--device", "cuda"}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeployFilesGolden(t *testing.T) {
	files, err := deployChain(t).DeployFiles(chains.DeployOptions{Package: "./examples/chains/poem", OutDir: "deploy/poem"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "deploy")
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := chains.WriteFiles(dir, files); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	var gotNames []string
	for n := range files {
		gotNames = append(gotNames, n)
	}
	slices.Sort(gotNames)
	if !slices.Equal(names, gotNames) {
		t.Errorf("files %v, golden %v (run go test ./chains -run TestDeployFilesGolden -update)", gotNames, names)
	}
	for name, got := range files {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from testdata/deploy (run go test ./chains -run TestDeployFilesGolden -update):\n%s", name, got)
		}
	}
}

func TestDeployFilesAreValid(t *testing.T) {
	files, err := deployChain(t).DeployFiles(chains.DeployOptions{Package: "./examples/chains/poem", OutDir: "deploy/poem", BasePort: 9000})
	if err != nil {
		t.Fatal(err)
	}
	wantBase := map[string]string{"Poet": "MODELSERVER_CUDA_IMAGE", "Mid": "MODELSERVER_IMAGE", "Leaf": "MODELSERVER_IMAGE", "LLM": "MODELSERVER_CUDA_IMAGE"}
	for name, arg := range wantBase {
		res, err := parser.Parse(bytes.NewReader(files["Dockerfile."+name]))
		if err != nil {
			t.Fatalf("Dockerfile.%s: %v", name, err)
		}
		stages, _, err := instructions.Parse(res.AST, nil)
		if err != nil {
			t.Fatalf("Dockerfile.%s: %v", name, err)
		}
		last := stages[len(stages)-1]
		if last.BaseName != "${"+arg+"}" {
			t.Errorf("Dockerfile.%s final stage is FROM %s, want ${%s}", name, last.BaseName, arg)
		}
		var entry []string
		for _, cmd := range last.Commands {
			if e, ok := cmd.(*instructions.EntrypointCommand); ok {
				entry = e.CmdLine
			}
		}
		wantEntry := []string{"/usr/local/bin/chain", "serve", "--chainlet", name, "--host", "0.0.0.0", "--port", "8080"}
		if name == "LLM" {
			wantEntry = []string{"/usr/local/bin/modelserver", "--model", "phi3-tiny", "--host", "0.0.0.0", "--port", "8080", "--device", "cuda"}
		}
		if !slices.Equal(entry, wantEntry) {
			t.Errorf("Dockerfile.%s ENTRYPOINT %q, want %q", name, entry, wantEntry)
		}
	}

	var compose struct {
		Services map[string]struct {
			Build struct {
				Context, Dockerfile string
			}
			Ports       []string
			Volumes     []string
			DependsOn   []string `yaml:"depends_on"`
			Environment map[string]string
			Deploy      struct {
				Resources struct {
					Reservations struct {
						Devices []struct {
							Driver       string
							Count        int
							Capabilities []string
						}
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal(files[chains.ComposeFile], &compose); err != nil {
		t.Fatalf("compose: %v\n%s", err, files[chains.ComposeFile])
	}
	poet, llm := compose.Services["poet"], compose.Services["llm"]
	if len(compose.Services) != 4 || poet.Build.Context != "../.." || poet.Build.Dockerfile != "deploy/poem/Dockerfile.Poet" ||
		!slices.Equal(poet.Ports, []string{"9000:8080"}) || !slices.Equal(poet.DependsOn, []string{"llm", "mid"}) ||
		len(llm.Deploy.Resources.Reservations.Devices) != 1 || llm.Deploy.Resources.Reservations.Devices[0].Count != 2 ||
		!slices.Equal(poet.Volumes, []string{"./dynamic_chainlet_config:/etc/b10_dynamic_config/dynamic_chainlet_config:ro"}) {
		t.Errorf("compose services %+v", compose.Services)
	}

	eps, err := chains.ParseDynamicConfig(files[chains.DynamicConfigFile])
	if err != nil || eps["Mid"].URL != "http://mid:8080/v1/models/model:predict" || len(eps) != 4 {
		t.Errorf("dynamic config %v, %v", eps, err)
	}
}

func TestMainGenDeployAndErrors(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := chains.RunForTest(context.Background(), []string{"gen-deploy", "--root", filepath.Dir(out), "--out", out, "--package", "./x"}, nil, &stdout, &stderr, []any{&Top{}, &Mid{}, &Leaf{}})
	if code != 0 || !strings.Contains(stdout.String(), "wrote 5 files") {
		t.Fatalf("gen-deploy exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	var dyn map[string]map[string]string
	data, _ := os.ReadFile(filepath.Join(out, chains.DynamicConfigFile))
	if err := json.Unmarshal(data, &dyn); err != nil || dyn["Top"]["predict_url"] != "http://top:8080/v1/models/model:predict" {
		t.Errorf("dynamic config %s: %v", data, err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"serve", "--chainlet", "Nope", "--port", "0", "--host", "127.0.0.1", "--dynamic-config", "/nonexistent"}, `no Chainlet "Nope" in this Chain (have: Top, Mid, Leaf)`},
		{[]string{"--chainlet", "Top", "--port", "0", "--host", "127.0.0.1", "--dynamic-config", "/nonexistent"}, "missing dependency endpoint: Chainlet Top needs Mid; endpoints known: []"},
		{[]string{"gen-deploy", "--out", "/elsewhere", "--package", "./x"}, "must be inside --root"},
		{[]string{"--chainlet", "Leaf", "--require-api-key", "--api-key-file", "/nonexistent", "--dynamic-config", "/nonexistent"}, "--require-api-key: no API key in /nonexistent or $TRUSS_SECRET_baseten_chain_api_key"},
	}
	for _, tt := range tests {
		stderr.Reset()
		code := chains.RunForTest(context.Background(), tt.args, nil, &stdout, &stderr, []any{&Top{}, &Mid{}, &Leaf{}})
		if code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

func TestMainServesWithDynamicConfigAndEnv(t *testing.T) {
	leafEps := servedChain(t, []any{&Top{}, &Mid{}, &Leaf{}}, nil, "")
	cfg := filepath.Join(t.TempDir(), "dynamic_chainlet_config")
	data, _ := json.Marshal(map[string]any{"Leaf": map[string]string{"predict_url": "http://127.0.0.1:1/unused"}})
	if err := os.WriteFile(cfg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	// The environment overrides the dynamic config; Mid serves on a free
	// port until ctx ends.
	env := []string{"CHAINS_CHAINLET=Mid", "CHAINS_DEP_LEAF=" + leafEps["Leaf"].URL, "INFERENCE_SERVER_PORT=0"}
	go func() {
		done <- chains.RunForTest(ctx, []string{"--host", "127.0.0.1", "--dynamic-config", cfg, "--log-format", "text"}, env, &stdout, &stderr, []any{&Top{}, &Mid{}, &Leaf{}})
	}()
	addr := waitListening(t, &stdout)
	mid := client[MidInput, LeafOutput](t, "Mid", chains.Endpoint{URL: "http://" + addr + chains.PredictPath}, chains.DepOptions{})
	got, err := mid.RunRemote(testContext(t), MidInput{Value: 2, Array: float32s(1)})
	cancel()
	if code := <-done; code != 0 || err != nil || got.Value != 4 {
		t.Errorf("Mid via Main: %+v, %v; exit %d, stderr %s", got, err, code, stderr.String())
	}
}

var listeningLine = regexp.MustCompile(`listening on (\S+)`)

// waitListening returns the address a served Chainlet printed.
func waitListening(t *testing.T, out *syncbuf.Buffer) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := listeningLine.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no listening line in %q", out.String())
	return ""
}
