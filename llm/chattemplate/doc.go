// Package chattemplate renders Hugging Face chat templates: the Jinja
// `chat_template` string of a model's tokenizer_config.json, which turns a
// list of chat messages into the prompt text the model was trained on.
//
// Contract:
//   - Compile parses once; a *Template is immutable and safe for concurrent
//     use by any number of goroutines. Render allocates its own state.
//   - The environment matches transformers' apply_chat_template: Jinja with
//     trim_blocks and lstrip_blocks on, one trailing newline of the source
//     dropped, and the variables messages, add_generation_prompt, bos_token,
//     eos_token, raise_exception(msg) and strftime_now(format), plus Input.Extra.
//     tojson writes what Python's json.dumps(ensure_ascii=False) writes
//     (", " and ": " separators, optional indent), keeping the key order of
//     json.RawMessage values and sorting the keys of Go maps.
//   - Errors: a syntax error is ErrTemplate; a raise_exception call in the
//     template is ErrTemplateRaised with the template's message (the client
//     sent a conversation the model does not accept, e.g. roles that do not
//     alternate); any other evaluation failure is ErrRender. Panics inside
//     the Jinja library are recovered and reported as ErrTemplate/ErrRender.
//   - Bounds: the template source is trusted configuration (a hostile one can
//     still allocate with string repetition or concatenation before a bound
//     applies); the messages are not, and content is never evaluated as
//     template code. Output is capped (Options.MaxOutputBytes,
//     ErrOutputLimit), loop iterations and macro calls share a step budget
//     (Options.MaxSteps),
//     macro and recursive-loop nesting is capped (ErrRender), range() is
//     capped at 100000 items as in Jinja's sandbox, and the source's bracket
//     nesting is capped at compile time so the parser cannot overflow the
//     stack. include, import, extends and from are rejected: a chat template
//     is one self-contained string.
//
// Library choice: github.com/nikolalohinski/gonja/v2, a pure-Go Jinja
// engine that follows Python Jinja's semantics (Python-style str() of values,
// undefined handling, loop.*, namespace(), negative slices, trim_blocks and
// lstrip_blocks, {%- -%}), is released often (v2.9.1, 2026-09) and renders
// real chat templates as transformers does; the interop test compares it
// byte for byte with @huggingface/jinja, the implementation transformers.js
// uses. It is the maintained continuation of noirbizarre/gonja; pongo2,
// the other pure-Go candidate, implements Django's syntax, not Jinja's.
// Where gonja differs from Python
// in ways real templates hit, this package supplies its own pieces: tojson
// (gonja's is compact and escapes HTML), range (gonja's leaks a goroutine
// when a loop stops early), raise_exception and strftime_now, and it
// rewrites two things gonja gets wrong: x[-n] with n equal to len(x)
// (messages[-1] on a one-message chat) and lstrip_blocks stripping blanks
// in the middle of a line. Remaining differences from Python Jinja, none of
// which the tested templates hit: {{ none }} prints nothing (as in
// transformers.js), list * int and division by zero do not fail, dict
// mutation methods have no effect, and Go maps in Extra show sorted keys.
package chattemplate
