package chattemplate

import (
	"reflect"
	"regexp"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
)

// protectInlineTags adds Jinja's "+" modifier ("{%+", "{#+": no
// lstrip_blocks for this tag) to block and comment tags that are preceded
// by blanks which do not start a line. Python Jinja strips only blanks that
// start a line; gonja (v2.9.1) also strips them mid-line when they follow
// another tag, so "{{ m.role }} {% endfor %}" loses its space. Tags are
// found with a small scanner that skips string literals inside tags and
// raw blocks, so text that only looks like a tag is left alone.
func protectInlineTags(src string) string {
	var out strings.Builder
	out.Grow(len(src) + 16)
	atLineStart := true // the data before the next tag starts a line
	for i := 0; i < len(src); {
		j := nextTag(src, i)
		if j < 0 {
			out.WriteString(src[i:])
			break
		}
		out.WriteString(src[i:j])
		kind := src[j+1]
		modifier := byte(0)
		if j+2 < len(src) {
			modifier = src[j+2]
		}
		out.WriteString(src[j : j+2])
		if kind != '{' && modifier != '+' && modifier != '-' && inlineBlanks(src[i:j], atLineStart) {
			out.WriteByte('+')
		}
		end := tagEnd(src, j)
		if kind == '%' && isRawTag(src[j:end]) {
			if loc := endRaw.FindStringIndex(src[end:]); loc != nil {
				end += loc[1]
			} else {
				end = len(src)
			}
		}
		out.WriteString(src[j+2 : end])
		// trim_blocks eats the newline after a block or comment tag, so the
		// data after it starts a line.
		atLineStart = kind != '{' && end < len(src) && src[end] == '\n' && src[end-3] != '+'
		i = end
	}
	return out.String()
}

var endRaw = regexp.MustCompile(`\{%[-+]?\s*endraw\s*[-+]?%\}`)

// nextTag returns the index of the next "{{", "{%" or "{#" at or after i,
// or -1.
func nextTag(src string, i int) int {
	for {
		k := strings.IndexByte(src[i:], '{')
		if k < 0 || i+k+1 >= len(src) {
			return -1
		}
		switch src[i+k+1] {
		case '{', '%', '#':
			return i + k
		}
		i += k + 1
	}
}

// inlineBlanks reports whether data ends in blanks that do not start a
// line: the blanks gonja strips and Python keeps.
func inlineBlanks(data string, dataAtLineStart bool) bool {
	k := len(data)
	for k > 0 && (data[k-1] == ' ' || data[k-1] == '\t') {
		k--
	}
	if k == len(data) {
		return false
	}
	if k > 0 {
		return data[k-1] != '\n'
	}
	return !dataAtLineStart
}

// tagEnd returns the index just past the tag starting at j, skipping quoted
// strings in expression and statement tags; len(src) if it is unclosed.
func tagEnd(src string, j int) int {
	if src[j+1] == '#' {
		if k := strings.Index(src[j+2:], "#}"); k >= 0 {
			return j + 2 + k + 2
		}
		return len(src)
	}
	closing := byte('}')
	if src[j+1] == '%' {
		closing = '%'
	}
	var quote byte
	for k := j + 2; k < len(src); k++ {
		c := src[k]
		switch {
		case quote != 0:
			if c == '\\' {
				k++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == closing && k+1 < len(src) && src[k+1] == '}':
			return k + 2
		}
	}
	return len(src)
}

// isRawTag reports whether tag is "{% raw %}" with optional modifiers.
func isRawTag(tag string) bool {
	body := strings.TrimSuffix(strings.TrimPrefix(tag, "{%"), "%}")
	return strings.Trim(body, "+- \t\r\n") == "raw"
}

// indexFilter names the filter that fixNegativeIndexes inserts; the space
// keeps templates from calling it.
const indexFilter = "chattemplate index"

// fixNegativeIndexes rewrites every x[i] in the parsed template to
// x[i|indexFilter(x)], which turns a negative i into len(x)+i. gonja
// (v2.9.1) returns nothing for x[-n] when n equals len(x), so
// messages[-1] fails on a one-message chat and s.split(sep)[-1] fails when
// sep is absent; Python counts from the end. The AST is walked by
// reflection because gonja offers no visitor over expressions inside
// statements.
func fixNegativeIndexes(root *nodes.Template) {
	seen := map[uintptr]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() || seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
			walk(v.Elem())
			if item, ok := v.Interface().(*nodes.GetItem); ok && item.Arg != nil {
				item.Arg = &nodes.FilteredExpression{
					Expression: item.Arg,
					Filters:    []*nodes.FilterCall{{Token: item.Location, Name: indexFilter, Args: []nodes.Expression{item.Node}}},
				}
			}
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				if field := v.Field(i); field.CanInterface() {
					walk(field)
				}
			}
		case reflect.Slice, reflect.Array:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Map:
			iter := v.MapRange()
			for iter.Next() {
				walk(iter.Value())
			}
		}
	}
	walk(reflect.ValueOf(root))
}

// filterIndex is indexFilter: index|indexFilter(container).
func filterIndex(_ *exec.Evaluator, index *exec.Value, params *exec.VarArgs) *exec.Value {
	if len(params.Args) != 1 || !index.IsInteger() || index.Integer() >= 0 {
		return index
	}
	container := params.Args[0]
	if !container.IsList() && !container.IsString() {
		return index
	}
	return exec.AsValue(index.Integer() + container.Len())
}
