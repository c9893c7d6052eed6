package chattemplate

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// golden returns the golden text of a render: the output, or "error: "
// and the message for a raise_exception.
func golden(out string, err error) string {
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	return out
}

func TestRealTemplatesGolden(t *testing.T) {
	for _, tmpl := range realTemplates(t) {
		compiled, err := Compile(tmpl.source)
		if err != nil {
			t.Fatalf("Compile(%s) = %v", tmpl.name, err)
		}
		for _, conv := range conversations {
			t.Run(tmpl.name+"/"+conv.name, func(t *testing.T) {
				out, err := compiled.Render(conv.input(tmpl))
				if err != nil && !errors.Is(err, ErrTemplateRaised) {
					t.Fatalf("Render = %v, want output or ErrTemplateRaised", err)
				}
				got := golden(out, err)
				path := filepath.Join("testdata", "golden", tmpl.name, conv.name+".txt")
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("Render =\n%q\nwant (%s)\n%q\n(go test -update rewrites golden files)", got, path, want)
				}
			})
		}
	}
}

// TestPhi3Mini pins the fallback template's exact prompt, the one the
// Phi-3 tokenizer reference ids were computed from.
func TestPhi3Mini(t *testing.T) {
	tmpl, err := Compile(Phi3Mini)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{{"system", "System message"}, {"user", "Hello, how are you?"}, {"assistant", "Sure, 3 things! 🦙 héllo"}}
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{"generation prompt", Input{Messages: msgs[:2], AddGenerationPrompt: true, EOSToken: "<|endoftext|>"},
			"<|system|>\nSystem message<|end|>\n<|user|>\nHello, how are you?<|end|>\n<|assistant|>\n"},
		{"closed with eos", Input{Messages: msgs, EOSToken: "<|endoftext|>"},
			"<|system|>\nSystem message<|end|>\n<|user|>\nHello, how are you?<|end|>\n<|assistant|>\nSure, 3 things! 🦙 héllo<|end|>\n<|endoftext|>"},
		{"unknown role skipped", Input{Messages: []Message{{"tool", "x"}, {"user", "hi"}}, AddGenerationPrompt: true},
			"<|user|>\nhi<|end|>\n<|assistant|>\n"},
		{"no messages", Input{EOSToken: "<|endoftext|>"}, "<|endoftext|>"},
	}
	for _, tt := range tests {
		got, err := tmpl.Render(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("%s: Render = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// featureCases exercise what HF templates use, one feature each. The
// interop tests render them with Python Jinja2 too, and with
// @huggingface/jinja unless jsDiffers says why not.
var featureCases = []struct {
	name      string
	template  string
	in        Input
	want      string
	jsDiffers string
}{
	{name: "last message of one", template: "{{ messages[-1]['role'] }}/{{ messages[-1].content }}",
		in: Input{Messages: []Message{{"user", "hi"}}}, want: "user/hi"},
	{name: "slices and length", template: "{{ messages[1:]|length }} {{ messages[1:][0].role }} {{ messages[:-1]|length }} {{ (messages|last).role }}",
		in: threeMessages, want: "2 user 2 assistant"},
	{name: "loop variables", template: "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }};{% endfor %}",
		in: threeMessages, want: "10TrueFalse33;21FalseFalse32;32FalseTrue31;",
		jsDiffers: "JavaScript prints booleans as true/false, Python and this package as True/False"},
	{name: "loop previtem", template: "{% for m in messages %}{% if loop.previtem is defined %}{{ loop.previtem.role }}>{% endif %}{{ m.role }} {% endfor %}",
		in: threeMessages, want: "system system>user user>assistant "},
	{name: "namespace", template: "{% set ns = namespace(n=0, last='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.last = m.role %}{% endfor %}{{ ns.n }} {{ ns.last }}",
		in: threeMessages, want: "3 assistant"},
	{name: "is defined", template: "{{ 'a' if tools is defined else 'b' }}{{ 'c' if messages is defined else 'd' }}{{ 'e' if messages[0].tool_calls is defined else 'f' }}",
		in: threeMessages, want: "bcf"},
	{name: "filters", template: "{{ messages[0].content|trim|upper }}|{{ 'ABC'|lower }}|{{ messages|length }}|{{ messages|map(attribute='role')|join(',') }}|{{ messages|selectattr('role', 'equalto', 'user')|list|length }}",
		in: threeMessages, want: "BE BRIEF.|abc|3|system,user,assistant|1"},
	{name: "string methods", template: "{{ messages[0].content.strip() }}|{{ 'a-b'.split('-')|join('+') }}|{{ 'x'.startswith('x') and 'ab'.endswith('b') }}|{{ 'hello world'.title() }}",
		in: threeMessages, want: "Be brief.|a+b|True|Hello World",
		jsDiffers: "booleans print differently (True vs true)"},
	{name: "whitespace control", template: "A  {%- if true -%}  B  {%- endif -%}  C {{- ' D ' -}} E",
		want: "ABC D E"},
	{name: "trim_blocks and lstrip_blocks", template: "<\n  {% for m in messages %}\n    {{ m.role }}\n  {% endfor %}\n>\n",
		in: threeMessages, want: "<\n    system\n    user\n    assistant\n>"},
	{name: "blanks before inline tags kept", template: "{% for m in messages %}{{ m.role }} {% if loop.last %}!{% endif %}\t{# c #}|\n  {% if true %}x{% endif %}\n{% endfor %}",
		in: threeMessages, want: "system \t|\nxuser \t|\nxassistant !\t|\nx"},
	{name: "negative indexes", template: "{{ messages[-3].role }} {{ (messages|selectattr('role', 'equalto', 'user')|list)[-1].content }} {{ 'a/b'.split('/')[-1] }} {{ 'ab'.split('/')[-1] }} {% for m in messages %}{{ messages[loop.index0 - 1].role }},{% endfor %}",
		in: threeMessages, want: "system Hi b ab assistant,system,user,"},
	{name: "plus modifier and raw", jsDiffers: "@huggingface/jinja supports neither {%+ nor raw blocks", template: "{% for m in messages %}{{ m.role }} {% if loop.last %}!{% endif %}\t{# c #}|\n  {%+ if true %}kept{% endif %}\n\t{% if true %}x{% endif %} {{ '{% raw %}' }}{% raw %} {% not a tag %}{% endraw %}\n{% endfor %}\n",
		in: threeMessages, want: "system \t|\n  keptx {% raw %} {% not a tag %}user \t|\n  keptx {% raw %} {% not a tag %}assistant !\t|\n  keptx {% raw %} {% not a tag %}"},
	{name: "comments and raw text", template: "a{# comment #}b\n{# another #}\nc",
		want: "ab\nc"},
	{name: "tojson", template: "{{ {'b': 1, 'a': [1, 'x', none, true, 2.5]}|tojson }}|{{ 'é\"\\n<'|tojson }}|{{ messages[0]|tojson }}",
		in: threeMessages, want: `{"b": 1, "a": [1, "x", null, true, 2.5]}|"é\"\n<"|{"role": "system", "content": " Be brief. "}`},
	{name: "tojson indent", template: "{{ tools|tojson(indent=2) }}",
		in:   Input{Extra: map[string]any{"tools": json.RawMessage(`[{"z": 1, "a": {"k": []}, "e": {}}]`)}},
		want: "[\n  {\n    \"z\": 1,\n    \"a\": {\n      \"k\": []\n    },\n    \"e\": {}\n  }\n]"},
	{name: "ordered items", template: "{% for k, v in tool.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in tool|items %}{{ k }};{% endfor %}{{ tool.keys()|list|length }}",
		in:   Input{Extra: map[string]any{"tool": json.RawMessage(`{"name": "f", "description": "d", "a": 1}`)}},
		want: "name=f;description=d;a=1;name;description;a;3"},
	{name: "range", template: "{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(5, 1, -2) %}{{ i }}{% endfor %}{{ range(0)|length }}",
		want: "012530"},
	{name: "bos eos and generation prompt", template: "{{ bos_token }}{% if add_generation_prompt %}gen{% endif %}{{ eos_token }}",
		in: Input{AddGenerationPrompt: true, BOSToken: "<s>", EOSToken: "</s>"}, want: "<s>gen</s>"},
	{name: "extra cannot shadow messages", template: "{{ messages|length }}{{ date_string }}",
		in: Input{Messages: []Message{{"user", "x"}}, Extra: map[string]any{"messages": "spoof", "date_string": "1 Jan"}}, want: "11 Jan"},
	{name: "bounded macro recursion", template: "{% macro depth(n) %}{% if n < 100 %}{{ depth(n + 1) }}{% else %}{{ n }}{% endif %}{% endmacro %}{{ depth(0) }}",
		want: "100"},
	{name: "set in if leaks out", template: "{% if true %}{% set x = 'in' %}{% endif %}{{ x }}",
		want: "in"},
	{name: "raise_exception", template: "{% if messages[0].role != 'user' %}{{ raise_exception('First message must be from the user, got ' + messages[0].role) }}{% endif %}ok",
		in: threeMessages, want: "error: chattemplate: template rejected the input: First message must be from the user, got system\n"},
}

var threeMessages = Input{Messages: []Message{{"system", " Be brief. "}, {"user", "Hi"}, {"assistant", "Hello"}}}

func TestFeatures(t *testing.T) {
	for _, tc := range featureCases {
		tmpl, err := Compile(tc.template)
		if err != nil {
			t.Errorf("%s: Compile = %v", tc.name, err)
			continue
		}
		got := golden(tmpl.Render(tc.in))
		if got != tc.want {
			t.Errorf("%s: Render = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestStrftimeNow(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, time.March, 7, 15, 4, 5, 0, time.UTC) }
	tmpl, err := CompileWithOptions(`{{ strftime_now("%d %b %Y") }}|{{ strftime_now("%Y-%m-%d %H:%M:%S %A %B %j %I%p %%") }}`, Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tmpl.Render(Input{})
	want := "07 Mar 2026|2026-03-07 15:04:05 Saturday March 066 03PM %"
	if err != nil || got != want {
		t.Errorf("Render = %q, %v; want %q", got, err, want)
	}
}

func TestExtraValues(t *testing.T) {
	tmpl, err := Compile("{{ a|tojson }}|{{ b|tojson }}|{{ c[-1] }}|{{ d.x }}")
	if err != nil {
		t.Fatal(err)
	}
	got, err := tmpl.Render(Input{Extra: map[string]any{
		"a": map[string]any{"z": 1, "b": []any{1.0, 1e16, 1.5e-5, "s"}},
		"b": json.RawMessage(`{"n": 10, "f": 1.0, "big": 1e400, "s": "\u2028"}`),
		"c": []any{"x", "y"},
		"d": map[string]any{"x": true},
	}})
	want := `{"b": [1.0, 1e+16, 1.5e-05, "s"], "z": 1}|{"n": 10, "f": 1.0, "big": Infinity, "s": "` + "\u2028" + `"}|y|True`
	if err != nil || got != want {
		t.Errorf("Render = %q, %v\nwant %q", got, err, want)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, source := range []string{
		"{% if x %}",
		"{{ x",
		"{% for %}{% endfor %}",
		"{% endif %}",
		"{{ x | }}",
		"{% include 'other' %}",
		"{% extends 'base' %}",
		"{% from 'x' import y %}",
		"{% import 'x' as y %}",
		strings.Repeat("(", 1000) + strings.Repeat(")", 1000),
		"{{" + strings.Repeat("[", 500) + "}}",
	} {
		_, err := Compile(source)
		if !errors.Is(err, ErrTemplate) {
			t.Errorf("Compile(%.40q) = %v, want ErrTemplate", source, err)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name     string
		template string
		opts     Options
		want     error
	}{
		{"raise", "{{ raise_exception('Conversation roles must alternate') }}", Options{}, ErrTemplateRaised},
		{"raise inside loop after output", "x{% for m in messages %}{{ raise_exception('bad') }}{% endfor %}", Options{}, ErrTemplateRaised},
		{"attribute of undefined", "{{ nothing.role }}", Options{}, ErrRender},
		{"index out of range then attribute", "{{ messages[5].role }}", Options{}, ErrRender},
		{"unknown filter", "{{ 'x'|no_such_filter }}", Options{}, ErrRender},
		{"output limit", "{% for i in range(100) %}0123456789{% endfor %}", Options{MaxOutputBytes: 500}, ErrOutputLimit},
		{"output limit without loop", "{{ messages[0].content }}", Options{MaxOutputBytes: 3}, ErrOutputLimit},
		{"step budget", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", Options{MaxSteps: 10000}, ErrRender},
		{"range cap", "{{ range(100001)|length }}", Options{}, ErrRender},
		{"macro recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", Options{}, ErrRender},
		{"macro recursion with loops", "{% macro f(n) %}{% for i in range(7) %}{% endfor %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", Options{}, ErrRender},
		{"recursive loop", "{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}", Options{}, ErrRender},
	}
	in := Input{Messages: []Message{{"user", "hello"}}}
	for _, tt := range tests {
		tmpl, err := CompileWithOptions(tt.template, tt.opts)
		if err != nil {
			t.Errorf("%s: Compile = %v", tt.name, err)
			continue
		}
		out, err := tmpl.Render(in)
		if !errors.Is(err, tt.want) || out != "" {
			t.Errorf("%s: Render = %q, %v; want error %v", tt.name, out, err, tt.want)
		}
	}
}

func TestInvalidExtraJSON(t *testing.T) {
	tmpl, err := Compile("{{ tools }}")
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{`{"a": }`, `[1] 2`, ``} {
		out, err := tmpl.Render(Input{Extra: map[string]any{"tools": []any{json.RawMessage(raw)}}})
		if !errors.Is(err, ErrRender) || out != "" {
			t.Errorf("Render(tools=%q) = %q, %v; want ErrRender", raw, out, err)
		}
	}
}

func TestRaiseMessage(t *testing.T) {
	tmpl, err := Compile("{{ raise_exception('roles must alternate: ' + messages[0].role) }}")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmpl.Render(Input{Messages: []Message{{"assistant", "x"}}})
	want := "chattemplate: template rejected the input: roles must alternate: assistant"
	if err == nil || err.Error() != want {
		t.Errorf("Render error = %v, want %q", err, want)
	}
}

// TestConcurrentRender renders every real template from several
// goroutines at once (run with -race) and expects the sequential output.
func TestConcurrentRender(t *testing.T) {
	type job struct {
		tmpl *Template
		in   Input
		want string
	}
	var jobs []job
	for _, named := range realTemplates(t) {
		tmpl, err := Compile(named.source)
		if err != nil {
			t.Fatal(err)
		}
		for _, conv := range conversations {
			in := conv.input(named)
			out, err := tmpl.Render(in)
			jobs = append(jobs, job{tmpl, in, golden(out, err)})
		}
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range jobs {
				j := jobs[(i+g*len(jobs)/4)%len(jobs)]
				if got := golden(j.tmpl.Render(j.in)); got != j.want {
					t.Errorf("concurrent Render = %q, want %q", got, j.want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkRenderPhi3Mini(b *testing.B) {
	tmpl, err := Compile(Phi3Mini)
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Messages: []Message{
		{"system", "You are a helpful assistant."},
		{"user", "Hello, how are you?"},
		{"assistant", "I'm doing great. How can I help you today?"},
		{"user", strings.Repeat("Tell me about chat templates. ", 20)},
	}, AddGenerationPrompt: true}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tmpl.Render(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileLlama32(b *testing.B) {
	source, err := os.ReadFile(filepath.Join("testdata", "templates", "llama-3.2-3b-instruct.jinja"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(string(source)); err != nil {
			b.Fatal(err)
		}
	}
}
