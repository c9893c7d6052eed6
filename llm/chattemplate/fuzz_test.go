package chattemplate

import (
	"errors"
	"strings"
	"testing"
)

// FuzzCompile feeds arbitrary template sources to Compile and renders what
// compiles. Neither may panic, and every failure must carry one of the
// package's sentinels. Sources with "*" are compiled but not rendered:
// string repetition allocates before any bound applies, and template
// sources are trusted configuration (see the package doc).
func FuzzCompile(f *testing.F) {
	for _, tmpl := range realTemplates(f) {
		f.Add(tmpl.source)
	}
	for _, tc := range featureCases {
		f.Add(tc.template)
	}
	for _, seed := range []string{
		"{% for i in range(10) recursive %}{{ loop([i]) }}{% endfor %}",
		"{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
		"{{ x[-1] }}{{ ''[-1] }}{{ none[0] }}{{ 1[0] }}",
		"{% raw %}{{ {% endraw %}{%+ if 1 %}{%- endif -%}",
		"{{ '\\u00e9' }}{{ \"}}\" }}{# {% #}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, source string) {
		tmpl, err := CompileWithOptions(source, Options{MaxOutputBytes: 1 << 14, MaxSteps: 64})
		if err != nil {
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("Compile error %v is not ErrTemplate", err)
			}
			return
		}
		if strings.Contains(source, "*") {
			return
		}
		_, err = tmpl.Render(Input{Messages: []Message{{"user", "hi"}, {"assistant", "yo"}}, BOSToken: "<s>"})
		if err != nil && !errors.Is(err, ErrRender) && !errors.Is(err, ErrTemplateRaised) && !errors.Is(err, ErrOutputLimit) {
			t.Fatalf("Render error %v carries no sentinel", err)
		}
	})
}

// FuzzRender renders every real template with arbitrary messages. It must
// not panic, must not fail to evaluate (only raise_exception may reject a
// conversation), and content is data: Phi3Mini's prompt is exactly the
// roles and contents in its format, whatever Jinja syntax they contain.
func FuzzRender(f *testing.F) {
	for _, conv := range conversations {
		for _, m := range conv.messages {
			f.Add(m.Role, m.Content, "assistant", "{{ x }}", conv.addGenerationPrompt)
		}
	}
	f.Add("user", "\x00\xff\xfe", "system", "{% endfor %}", false)
	templates := realTemplates(f)
	compiled := make([]*Template, len(templates))
	for i, tmpl := range templates {
		var err error
		if compiled[i], err = Compile(tmpl.source); err != nil {
			f.Fatal(err)
		}
	}
	phi3, err := Compile(Phi3Mini)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, role1, content1, role2, content2 string, addGenerationPrompt bool) {
		messages := []Message{{role1, content1}, {role2, content2}}
		for i, tmpl := range compiled {
			in := Input{Messages: messages, AddGenerationPrompt: addGenerationPrompt,
				BOSToken: templates[i].bos, EOSToken: templates[i].eos, Extra: map[string]any{"date_string": "26 Jul 2024"}}
			if _, err := tmpl.Render(in); err != nil && !errors.Is(err, ErrTemplateRaised) && !errors.Is(err, ErrOutputLimit) {
				t.Fatalf("%s: Render = %v", templates[i].name, err)
			}
		}
		got, err := phi3.Render(Input{Messages: messages, AddGenerationPrompt: true})
		want := phi3Prompt(messages)
		if err != nil && !errors.Is(err, ErrOutputLimit) || err == nil && got != want {
			t.Fatalf("Phi3Mini Render = %q, %v; want %q", got, err, want)
		}
	})
}

// phi3Prompt is Phi3Mini's format written out in Go.
func phi3Prompt(messages []Message) string {
	var b strings.Builder
	for _, m := range messages {
		switch m.Role {
		case "system", "user", "assistant":
			b.WriteString("<|" + m.Role + "|>\n" + m.Content + "<|end|>\n")
		}
	}
	return b.String() + "<|assistant|>\n"
}
