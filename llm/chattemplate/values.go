package chattemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// newDict returns an ordered mapping from alternating keys and values;
// Python dicts keep insertion order, and tojson and str() show it.
func newDict(keyValues ...any) *exec.Dict {
	d := &exec.Dict{Pairs: make([]*exec.Pair, 0, len(keyValues)/2)}
	for i := 0; i+1 < len(keyValues); i += 2 {
		d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(keyValues[i]), Value: exec.AsValue(keyValues[i+1])})
	}
	return d
}

// fromGo converts an Input.Extra value for the template: json.RawMessage
// values, also inside []any and map[string]any, are decoded keeping key
// order. Other values pass through; gonja reads Go maps with sorted keys.
func fromGo(value any) (any, error) {
	switch v := value.(type) {
	case json.RawMessage:
		return decodeOrdered(v)
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			var err error
			if out[i], err = fromGo(item); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for key, item := range v {
			var err error
			if out[key], err = fromGo(item); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return value, nil
}

// decodeOrdered decodes JSON into template values: objects become ordered
// dicts, arrays lists, numbers ints or floats as in Python.
func decodeOrdered(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	value, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data")
	}
	return value, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		d := &exec.Dict{Pairs: []*exec.Pair{}}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return nil, err
			}
			value, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(key), Value: exec.AsValue(value)})
		}
		_, err := dec.Token()
		return d, err
	case json.Delim('['):
		l := []any{}
		for dec.More() {
			value, err := decodeValue(dec)
			if err != nil {
				return nil, err
			}
			l = append(l, value)
		}
		_, err := dec.Token()
		return l, err
	}
	if number, ok := tok.(json.Number); ok {
		return pyNumber(number), nil
	}
	return tok, nil
}

// pyNumber converts a JSON number as Python's json module does: integer
// literals become ints, others floats.
func pyNumber(number json.Number) any {
	if !strings.ContainsAny(number.String(), ".eE") {
		if i, err := number.Int64(); err == nil {
			return int(i)
		}
	}
	// Out-of-range literals parse to ±Inf with an error; Python gives inf.
	f, _ := strconv.ParseFloat(number.String(), 64)
	return f
}

// pyJSON writes v as Python's json.dumps(v, ensure_ascii=False,
// indent=indent) does; indent < 0 means no indent.
func pyJSON(v any, indent int) (string, error) {
	var b strings.Builder
	if err := writeJSON(&b, reflect.ValueOf(v), indent, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

// maxJSONDepth stops tojson on self-referencing or absurdly deep values.
const maxJSONDepth = 200

func writeJSON(b *strings.Builder, v reflect.Value, indent, depth int) error {
	if depth > maxJSONDepth {
		return errors.New("tojson: value nested too deep")
	}
	for v.IsValid() && (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) {
		if v.IsNil() {
			b.WriteString("null")
			return nil
		}
		if value, ok := v.Interface().(*exec.Value); ok {
			v = value.Val
			continue
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		b.WriteString("null")
		return nil
	}
	switch x := v.Interface().(type) {
	case json.Number:
		b.WriteString(x.String())
		return nil
	case exec.Dict:
		keys := make([]reflect.Value, len(x.Pairs))
		values := make([]reflect.Value, len(x.Pairs))
		for i, p := range x.Pairs {
			keys[i], values[i] = reflect.ValueOf(p.Key), reflect.ValueOf(p.Value)
		}
		return writeObject(b, keys, values, indent, depth)
	case error:
		return x
	}
	switch v.Kind() {
	case reflect.Bool:
		b.WriteString(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		b.WriteString(pyFloat(v.Float()))
	case reflect.String:
		writeJSONString(b, v.String())
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				b.WriteByte(',')
				if indent < 0 {
					b.WriteByte(' ')
				}
			}
			newline(b, indent, depth+1)
			if err := writeJSON(b, v.Index(i), indent, depth+1); err != nil {
				return err
			}
		}
		newline(b, indent, depth)
		b.WriteByte(']')
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		values := make([]reflect.Value, len(keys))
		for i, k := range keys {
			values[i] = v.MapIndex(k)
		}
		return writeObject(b, keys, values, indent, depth)
	default:
		return fmt.Errorf("tojson: cannot serialize %s", v.Type())
	}
	return nil
}

func writeObject(b *strings.Builder, keys, values []reflect.Value, indent, depth int) error {
	if len(keys) == 0 {
		b.WriteString("{}")
		return nil
	}
	b.WriteByte('{')
	for i := range keys {
		if i > 0 {
			b.WriteByte(',')
			if indent < 0 {
				b.WriteByte(' ')
			}
		}
		newline(b, indent, depth+1)
		key := keys[i]
		for key.Kind() == reflect.Interface || key.Kind() == reflect.Pointer {
			if value, ok := key.Interface().(*exec.Value); ok {
				key = value.Val
				continue
			}
			key = key.Elem()
		}
		if key.Kind() == reflect.String {
			writeJSONString(b, key.String())
		} else {
			writeJSONString(b, exec.ToValue(key).String())
		}
		b.WriteString(": ")
		if err := writeJSON(b, values[i], indent, depth+1); err != nil {
			return err
		}
	}
	newline(b, indent, depth)
	b.WriteByte('}')
	return nil
}

func newline(b *strings.Builder, indent, depth int) {
	if indent < 0 {
		return
	}
	b.WriteByte('\n')
	b.WriteString(strings.Repeat(" ", indent*depth))
}

// writeJSONString escapes like json.dumps(ensure_ascii=False): quote,
// backslash and control characters only.
func writeJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// pyFloat formats like Python's float repr: shortest round-trip digits,
// ".0" on integral values, exponent form below 1e-4 and from 1e16.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mantissa, e, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(e)
	if exp < -4 || exp >= 16 {
		sign, digits := e[:1], strings.TrimLeft(e[1:], "0")
		if len(digits) < 2 {
			digits = strings.Repeat("0", 2-len(digits)) + digits
		}
		return mantissa + "e" + sign + digits
	}
	s = strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
