package chattemplate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The interop tests render every golden case and every feature case with
// reference implementations and require the same bytes, or an error on both
// sides with the same raise_exception message. They skip when the reference
// is not installed, unless MODELSERVER_REQUIRE_INTEROP=1.

// TestInteropHuggingFaceJinja compares with @huggingface/jinja, the Jinja
// of transformers.js (testdata/node, installed with npm ci).
func TestInteropHuggingFaceJinja(t *testing.T) {
	dir := filepath.Join("testdata", "node")
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "@huggingface", "jinja"))
	}
	if err != nil {
		skipOrFail(t, "node or testdata/node/node_modules (npm ci --prefix llm/chattemplate/testdata/node)", err)
	}
	cases := interopCases(t, true)
	compareWith(t, cases, runReference(t, cases, dir, node, "render.mjs"))
}

// TestInteropPythonJinja compares with Python Jinja2 set up as
// transformers' apply_chat_template (testdata/python; Debian's
// python3-jinja2).
func TestInteropPythonJinja(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import jinja2.sandbox").Run(); err != nil {
		skipOrFail(t, python+" with jinja2 (apt-get install python3-jinja2)", err)
	}
	cases := interopCases(t, false)
	compareWith(t, cases, runReference(t, cases, filepath.Join("testdata", "python"), python, "render.py"))
}

func skipOrFail(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("MODELSERVER_REQUIRE_INTEROP") == "1" {
		t.Fatalf("interop required but %s is unavailable: %v", what, err)
	}
	t.Skipf("%s unavailable: %v", what, err)
}

// interopCase is one (template, variables) pair for a reference renderer,
// with the Go result next to it.
type interopCase struct {
	Name      string         `json:"name"`
	Template  string         `json:"template"`
	Variables map[string]any `json:"variables"`

	goOutput string
	goErr    error
}

type referenceResult struct {
	Name   string  `json:"name"`
	Output *string `json:"output"`
	Error  *string `json:"error"`
}

// interopCases renders all golden and feature cases in Go. Feature cases
// that transformers.js renders differently are left out for it.
func interopCases(t *testing.T, javaScript bool) []*interopCase {
	t.Helper()
	var cases []*interopCase
	add := func(name, source string, vars map[string]any, in Input) {
		tmpl, err := Compile(source)
		if err != nil {
			t.Fatalf("Compile(%s) = %v", name, err)
		}
		out, err := tmpl.Render(in)
		cases = append(cases, &interopCase{Name: name, Template: source, Variables: vars, goOutput: out, goErr: err})
	}
	for _, tmpl := range realTemplates(t) {
		for _, conv := range conversations {
			add(tmpl.name+"/"+conv.name, tmpl.source, conv.variables(tmpl), conv.input(tmpl))
		}
	}
	for _, fc := range featureCases {
		if javaScript && fc.jsDiffers != "" {
			continue
		}
		add("feature/"+fc.name, fc.template, jsonVariables(t, fc.in), fc.in)
	}
	return cases
}

// runReference runs "command script cases.json" in dir and decodes its
// results.
func runReference(t *testing.T, cases []*interopCase, dir, command, script string) []referenceResult {
	t.Helper()
	casesPath := filepath.Join(t.TempDir(), "cases.json")
	data, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(casesPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, command, script, casesPath)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", command, script, err, stderr.String())
	}
	var results []referenceResult
	if err := json.Unmarshal(stdout, &results); err != nil {
		t.Fatalf("decode %s output: %v", script, err)
	}
	if len(results) != len(cases) {
		t.Fatalf("%s returned %d results for %d cases", script, len(results), len(cases))
	}
	return results
}

func compareWith(t *testing.T, cases []*interopCase, results []referenceResult) {
	t.Helper()
	for i, c := range cases {
		ref := results[i]
		switch {
		case ref.Name != c.Name:
			t.Fatalf("result %d is %q, want %q", i, ref.Name, c.Name)
		case ref.Error != nil && c.goErr == nil:
			t.Errorf("%s: reference failed (%s), Go rendered %q", c.Name, *ref.Error, c.goOutput)
		case ref.Error == nil && c.goErr != nil:
			t.Errorf("%s: Go failed (%v), reference rendered %q", c.Name, c.goErr, *ref.Output)
		case ref.Error != nil:
			if errors.Is(c.goErr, ErrTemplateRaised) && c.goErr.Error() != ErrTemplateRaised.Error()+": "+*ref.Error {
				t.Errorf("%s: Go raised %q, reference %q", c.Name, c.goErr, *ref.Error)
			}
		case *ref.Output != c.goOutput:
			t.Errorf("%s:\nGo        %q\nreference %q", c.Name, c.goOutput, *ref.Output)
		}
	}
	t.Logf("%d cases rendered identically", len(cases))
}

// jsonVariables is in as a reference renderer's variables: Extra first,
// then the standard variables, as Render does.
func jsonVariables(t *testing.T, in Input) map[string]any {
	t.Helper()
	vars := map[string]any{}
	for name, value := range in.Extra {
		raw, ok := value.(json.RawMessage)
		if !ok {
			var err error
			if raw, err = json.Marshal(value); err != nil {
				t.Fatal(err)
			}
		}
		vars[name] = raw
	}
	conv := conversation{messages: in.Messages, addGenerationPrompt: in.AddGenerationPrompt}
	for name, value := range conv.variables(namedTemplate{bos: in.BOSToken, eos: in.EOSToken}) {
		if name != "date_string" {
			vars[name] = value
		}
	}
	return vars
}
