package chains

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/modelserver/modelserver/codec"
	"github.com/modelserver/modelserver/tensor"
)

// ErrSerialization marks a value that could not be encoded or decoded: a
// request body that does not fit a Chainlet's input type, or an answer that
// does not fit the caller's output type.
var ErrSerialization = errors.New("chains: serialization")

var (
	tensorType      = reflect.TypeFor[tensor.Tensor]()
	timeType        = reflect.TypeFor[time.Time]()
	bytesType       = reflect.TypeFor[[]byte]()
	errorType       = reflect.TypeFor[error]()
	jsonMarshaler   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textMarshaler   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// binaryPassThrough are the codec value types that msgpack carries natively
// (Truss's extension types and numpy scalars); in JSON they fall back to
// their JSON methods or their kind.
var binaryPassThrough = map[reflect.Type]bool{
	timeType:                           true,
	reflect.TypeFor[codec.Date]():      true,
	reflect.TypeFor[codec.TimeOfDay](): true,
	reflect.TypeFor[codec.Timedelta](): true,
	reflect.TypeFor[codec.Decimal]():   true,
	reflect.TypeFor[codec.Complex]():   true,
	reflect.TypeFor[codec.Scalar]():    true,
	reflect.TypeFor[uuid.UUID]():       true,
}

// encodeValue serializes v as a Chainlet body: msgpack (Truss's
// truss_msgpack_serialize layout, ndarrays as msgpack_numpy maps) when binary,
// JSON otherwise (tensors as NumpyArrayField objects). Struct fields are named
// by their json tags, as pydantic names them by attribute.
func encodeValue(v reflect.Value, binary bool) ([]byte, error) {
	tree, err := toTree(v, binary, "")
	if err != nil {
		return nil, err
	}
	if binary {
		b, err := codec.EncodeMsgpack(tree)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSerialization, err)
		}
		return b, nil
	}
	// Compact and without HTML escaping, as pydantic's model_dump_json.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSerialization, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// decodeValue parses body (msgpack when binary, else JSON) into dst, a
// settable value. Decoded []byte and tensor data may alias body.
func decodeValue(body []byte, binary bool, dst reflect.Value) error {
	tree, err := parseTree(body, binary)
	if err != nil {
		return err
	}
	return fromTree(tree, dst, "")
}

func parseTree(body []byte, binary bool) (any, error) {
	if binary {
		tree, err := codec.DecodeMsgpack(body)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSerialization, err)
		}
		return tree, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("%w: invalid JSON: %w", ErrSerialization, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: invalid JSON: data after the value", ErrSerialization)
	}
	return tree, nil
}

func pathErr(path, format string, args ...any) error {
	if path == "" {
		path = "value"
	}
	return fmt.Errorf("%w: %s: %s", ErrSerialization, path, fmt.Sprintf(format, args...))
}

func joinPath(path, elem string) string {
	if path == "" {
		return elem
	}
	if strings.HasPrefix(elem, "[") {
		return path + elem
	}
	return path + "." + elem
}

// toTree turns a Go value into the value tree codec.EncodeMsgpack takes or,
// for JSON, a tree json.Marshal writes as pydantic would.
func toTree(v reflect.Value, binary bool, path string) (any, error) {
	if !v.IsValid() {
		return nil, nil
	}
	t := v.Type()
	switch {
	case t == tensorType:
		tt := v.Interface().(tensor.Tensor)
		if err := tt.Validate(); err != nil {
			return nil, pathErr(path, "invalid ndarray (use *tensor.Tensor for an optional one): %v", err)
		}
		if binary {
			return tt, nil
		}
		return tensorJSON(tt), nil
	case binary && binaryPassThrough[t]:
		return v.Interface(), nil
	case t.Implements(jsonMarshaler) && t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface:
		return marshalerTree(v, binary, path)
	case t.Implements(textMarshaler) && t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface:
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, pathErr(path, "%v", err)
		}
		return string(b), nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return v.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u := v.Uint()
		if u <= math.MaxInt64 {
			return int64(u), nil
		}
		return u, nil
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if !binary && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return nil, pathErr(path, "%v cannot be written as JSON (use binary mode)", f)
		}
		return f, nil // Python floats are float64 on the wire
	case reflect.String:
		return v.String(), nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil, nil
		}
		return toTree(v.Elem(), binary, path)
	case reflect.Slice:
		if v.IsNil() {
			return nil, nil
		}
		if t.Elem().Kind() == reflect.Uint8 {
			b := v.Bytes()
			if binary {
				return b, nil
			}
			return base64.StdEncoding.EncodeToString(b), nil
		}
		return listTree(v, binary, path)
	case reflect.Array:
		return listTree(v, binary, path)
	case reflect.Map:
		if v.IsNil() {
			return nil, nil
		}
		if t.Key().Kind() != reflect.String {
			return nil, pathErr(path, "map keys of type %s cannot be serialized", t.Key())
		}
		m := make(map[string]any, v.Len())
		it := v.MapRange()
		for it.Next() {
			k := it.Key().String()
			e, err := toTree(it.Value(), binary, joinPath(path, k))
			if err != nil {
				return nil, err
			}
			m[k] = e
		}
		return m, nil
	case reflect.Struct:
		fields := structFields(t)
		m := make(map[string]any, len(fields))
		for _, f := range fields {
			fv := v.FieldByIndex(f.index)
			if f.omitEmpty && fv.IsZero() {
				continue
			}
			e, err := toTree(fv, binary, joinPath(path, f.name))
			if err != nil {
				return nil, err
			}
			m[f.name] = e
		}
		return m, nil
	}
	return nil, pathErr(path, "values of type %s cannot be serialized", t)
}

func listTree(v reflect.Value, binary bool, path string) (any, error) {
	out := make([]any, v.Len())
	for i := range out {
		e, err := toTree(v.Index(i), binary, joinPath(path, fmt.Sprintf("[%d]", i)))
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// marshalerTree serializes a type with its own MarshalJSON by re-reading its
// JSON as a tree, so that it nests inside msgpack bodies too.
func marshalerTree(v reflect.Value, binary bool, path string) (any, error) {
	b, err := v.Interface().(json.Marshaler).MarshalJSON()
	if err != nil {
		return nil, pathErr(path, "%v", err)
	}
	if !binary {
		return json.RawMessage(b), nil
	}
	tree, err := parseTree(b, false)
	if err != nil {
		return nil, pathErr(path, "%v", err)
	}
	return numbersToNative(tree), nil
}

// numbersToNative replaces json.Number leaves by int64 or float64 so that the
// msgpack encoder can write them.
func numbersToNative(x any) any {
	switch x := x.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbersToNative(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbersToNative(x[k])
		}
	}
	return x
}

// arrayField is Truss's NumpyArrayField JSON form of an ndarray, with
// pydantic's key order.
type arrayField struct {
	DataB64 string  `json:"data_b64"`
	Shape   []int64 `json:"shape"`
	DType   string  `json:"dtype"`
}

// tensorJSON writes a tensor as a NumpyArrayField (little-endian data, the
// numpy dtype name).
func tensorJSON(t tensor.Tensor) arrayField {
	shape := t.Shape
	if shape == nil {
		shape = []int64{}
	}
	return arrayField{DataB64: base64.StdEncoding.EncodeToString(t.Data), Shape: shape, DType: t.DType.String()}
}

// tensorFromTree reads an ndarray: a decoded msgpack ndarray or numpy scalar,
// a NumpyArrayField object, or a nested list of numbers (read as float64).
func tensorFromTree(x any, path string) (tensor.Tensor, error) {
	switch x := x.(type) {
	case tensor.Tensor:
		return x, nil
	case codec.Scalar:
		return x.Tensor, nil
	case map[string]any:
		return arrayFieldFromTree(x, path)
	}
	const key = "v"
	b, err := json.Marshal(map[string]any{key: treeForJSON(x)})
	if err != nil {
		return tensor.Tensor{}, pathErr(path, "not an ndarray: %v", err)
	}
	got, _, err := codec.DecodeTensors(b, false, func(string) (tensor.DType, bool) { return tensor.Float64, true })
	if err != nil {
		return tensor.Tensor{}, pathErr(path, "not an ndarray: %v", err)
	}
	return got[key], nil
}

func arrayFieldFromTree(m map[string]any, path string) (tensor.Tensor, error) {
	b64, ok1 := m["data_b64"].(string)
	dtype, ok2 := m["dtype"].(string)
	dims, ok3 := m["shape"].([]any)
	if !ok1 || !ok2 || !ok3 {
		return tensor.Tensor{}, pathErr(path, `not an ndarray: want a NumpyArrayField {"data_b64": str, "shape": [int], "dtype": str}`)
	}
	d, bigEndian, err := tensor.ParseDType(dtype)
	if err != nil {
		return tensor.Tensor{}, pathErr(path, "not an ndarray: %v", err)
	}
	shape := make([]int64, len(dims))
	for i, x := range dims {
		n, ok := asInt(x)
		if !ok || n < 0 {
			return tensor.Tensor{}, pathErr(path, "not an ndarray: bad shape dimension %v", x)
		}
		shape[i] = n
	}
	want, err := tensor.ByteSize(d, shape)
	if err != nil {
		return tensor.Tensor{}, pathErr(path, "not an ndarray: %v", err)
	}
	if base64.StdEncoding.DecodedLen(len(b64)) < want {
		return tensor.Tensor{}, pathErr(path, "not an ndarray: shape %s of %v needs %d bytes, data_b64 has fewer", tensor.ShapeString(shape), d, want)
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return tensor.Tensor{}, pathErr(path, "not an ndarray: data_b64: %v", err)
	}
	if bigEndian {
		tensor.SwapBytes(d, data)
	}
	t, err := tensor.New(d, shape, data)
	if err != nil {
		return tensor.Tensor{}, pathErr(path, "not an ndarray: %v", err)
	}
	return t, nil
}

// treeForJSON makes a msgpack-decoded tree marshalable as JSON, the form
// that json.Unmarshaler implementations and NumpyArrayField parsing read.
func treeForJSON(x any) any {
	switch x := x.(type) {
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = treeForJSON(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = treeForJSON(e)
		}
		return out
	case tensor.Tensor:
		return tensorJSON(x)
	case codec.Scalar:
		return treeForJSON(x.Tensor)
	}
	return x
}

// fromTree stores a decoded tree into dst, converting as pydantic's lax mode
// does for the common cases (ints into floats, whole floats into ints).
// Missing struct fields keep their zero value; unknown keys are ignored.
func fromTree(x any, dst reflect.Value, path string) error {
	t := dst.Type()
	switch {
	case t == tensorType:
		tt, err := tensorFromTree(x, path)
		if err != nil {
			return err
		}
		dst.Set(reflect.ValueOf(tt))
		return nil
	case binaryPassThrough[t] && x != nil && reflect.TypeOf(x) == t:
		dst.Set(reflect.ValueOf(x))
		return nil
	case t == timeType:
		if tm, ok := x.(time.Time); ok {
			dst.Set(reflect.ValueOf(tm))
			return nil
		}
	}
	if t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		b, err := json.Marshal(treeForJSON(x))
		if err != nil {
			return pathErr(path, "%v", err)
		}
		if err := dst.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
			return pathErr(path, "%v", err)
		}
		return nil
	}
	if s, ok := x.(string); ok && t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && reflect.PointerTo(t).Implements(textUnmarshaler) {
		if err := dst.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return pathErr(path, "%v", err)
		}
		return nil
	}
	if x == nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
			dst.SetZero()
			return nil
		}
		return pathErr(path, "null is not a valid %s", t)
	}
	switch t.Kind() {
	case reflect.Bool:
		b, ok := x.(bool)
		if !ok {
			return mismatch(path, x, t)
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := asInt(x)
		if !ok || dst.OverflowInt(i) {
			return mismatch(path, x, t)
		}
		dst.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		u, ok := asUint(x)
		if !ok || dst.OverflowUint(u) {
			return mismatch(path, x, t)
		}
		dst.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, ok := asFloat(x)
		if !ok {
			return mismatch(path, x, t)
		}
		dst.SetFloat(f)
	case reflect.String:
		s, ok := x.(string)
		if !ok {
			return mismatch(path, x, t)
		}
		dst.SetString(s)
	case reflect.Pointer:
		e := reflect.New(t.Elem())
		if err := fromTree(x, e.Elem(), path); err != nil {
			return err
		}
		dst.Set(e)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return pathErr(path, "cannot decode into interface %s", t)
		}
		dst.Set(reflect.ValueOf(numbersToNative(x)))
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			b, err := bytesFromTree(x, path)
			if err != nil {
				return err
			}
			dst.SetBytes(b)
			return nil
		}
		list, ok := x.([]any)
		if !ok {
			return mismatch(path, x, t)
		}
		s := reflect.MakeSlice(t, len(list), len(list))
		for i, e := range list {
			if err := fromTree(e, s.Index(i), joinPath(path, fmt.Sprintf("[%d]", i))); err != nil {
				return err
			}
		}
		dst.Set(s)
	case reflect.Array:
		list, ok := x.([]any)
		if !ok || len(list) != t.Len() {
			return pathErr(path, "want a list of %d items", t.Len())
		}
		for i, e := range list {
			if err := fromTree(e, dst.Index(i), joinPath(path, fmt.Sprintf("[%d]", i))); err != nil {
				return err
			}
		}
	case reflect.Map:
		m, ok := x.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			return mismatch(path, x, t)
		}
		out := reflect.MakeMapWithSize(t, len(m))
		for k, e := range m {
			ev := reflect.New(t.Elem()).Elem()
			if err := fromTree(e, ev, joinPath(path, k)); err != nil {
				return err
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
		}
		dst.Set(out)
	case reflect.Struct:
		m, ok := x.(map[string]any)
		if !ok {
			return mismatch(path, x, t)
		}
		for _, f := range structFields(t) {
			e, ok := m[f.name]
			if !ok {
				continue
			}
			if err := fromTree(e, dst.FieldByIndex(f.index), joinPath(path, f.name)); err != nil {
				return err
			}
		}
	default:
		return pathErr(path, "cannot decode into %s", t)
	}
	return nil
}

func bytesFromTree(x any, path string) ([]byte, error) {
	switch x := x.(type) {
	case []byte:
		return x, nil
	case string:
		b, err := base64.StdEncoding.DecodeString(x)
		if err != nil {
			return nil, pathErr(path, "bytes in JSON must be base64: %v", err)
		}
		return b, nil
	}
	return nil, mismatch(path, x, bytesType)
}

func mismatch(path string, x any, t reflect.Type) error {
	return pathErr(path, "cannot use %s as %s", describe(x), t)
}

func describe(x any) string {
	switch x := x.(type) {
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return fmt.Sprintf("string %q", x)
	case json.Number:
		return "number " + x.String()
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T %v", x, x)
}

func asInt(x any) (int64, bool) {
	switch x := x.(type) {
	case int64:
		return x, true
	case uint64:
		return 0, false
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true
		}
		f, err := x.Float64()
		return int64(f), err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63
	case float64:
		return int64(x), x == math.Trunc(x) && math.Abs(x) < 1<<63
	case float32:
		return asInt(float64(x))
	case bool:
		return 0, false
	}
	return 0, false
}

func asUint(x any) (uint64, bool) {
	switch x := x.(type) {
	case uint64:
		return x, true
	case json.Number:
		var u uint64
		if _, err := fmt.Sscan(x.String(), &u); err == nil {
			return u, true
		}
	}
	i, ok := asInt(x)
	return uint64(i), ok && i >= 0
}

func asFloat(x any) (float64, bool) {
	switch x := x.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

type fieldInfo struct {
	name      string
	index     []int
	omitEmpty bool
}

// structFields lists a struct's serialized fields: exported, named by their
// json tag (or Go name), skipping `json:"-"`; untagged embedded structs are
// flattened as encoding/json does.
func structFields(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type == entrypointType {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for _, sub := range structFields(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, fieldInfo{name: name, index: []int{i}, omitEmpty: strings.Contains(opts, "omitempty")})
	}
	return out
}

// checkSerializable reports why values of type t cannot travel between
// Chainlets (channels, functions, complex numbers, non-string map keys), or
// nil.
func checkSerializable(t reflect.Type) error {
	return checkType(t, t.String(), map[reflect.Type]bool{})
}

func checkType(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] || t == tensorType || binaryPassThrough[t] {
		return nil
	}
	seen[t] = true
	if t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) ||
		t.Implements(textMarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return fmt.Errorf("%s: a %s cannot be serialized", path, t.Kind())
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return fmt.Errorf("%s: interface %s cannot be decoded (use a concrete type or any)", path, t)
		}
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return checkType(t.Elem(), path, seen)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return fmt.Errorf("%s: map keys of type %s cannot be serialized (only strings)", path, t.Key())
		}
		return checkType(t.Elem(), path, seen)
	case reflect.Struct:
		for _, f := range structFields(t) {
			if err := checkType(t.FieldByIndex(f.index).Type, path+"."+f.name, seen); err != nil {
				return err
			}
		}
	}
	return nil
}

// streamKind says how a Chainlet streams its answer, when its output type is
// iter.Seq2[T, error].
type streamKind int

const (
	notStream streamKind = iota
	streamStrings
	streamBytes
	streamItems
)

// streamOf reports whether t is iter.Seq2[T, error] and of which items.
func streamOf(t reflect.Type) (streamKind, reflect.Type) {
	if t.Kind() != reflect.Func || t.NumIn() != 1 || t.NumOut() != 0 {
		return notStream, nil
	}
	yield := t.In(0)
	if yield.Kind() != reflect.Func || yield.NumIn() != 2 || yield.NumOut() != 1 ||
		yield.In(1) != errorType || yield.Out(0).Kind() != reflect.Bool {
		return notStream, nil
	}
	item := yield.In(0)
	switch {
	case item.Kind() == reflect.String:
		return streamStrings, item
	case item == bytesType:
		return streamBytes, item
	}
	return streamItems, item
}
