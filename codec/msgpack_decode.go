package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/modelserver/modelserver/tensor"
)

// MaxDepth is the deepest nesting of msgpack arrays and maps the decoders
// accept; Python's msgpack unpacker stops at the same depth.
const MaxDepth = 1024

// DecodeMsgpack decodes one msgpack value, read as Truss reads it
// (msgpack.unpackb with msgpack_numpy's and Truss's object hooks), into a
// tree of these Go values:
//
//	nil                    nil
//	bool                   bool
//	int (any width)        int64; uint64 only above math.MaxInt64
//	float 32 / float 64    float32 / float64
//	str                    string (must be UTF-8)
//	bin                    []byte, aliasing body
//	array                  []any
//	map                    map[string]any (keys str or bin; the last duplicate wins)
//	ndarray {nd: True}     tensor.Tensor (Data may alias body)
//	numpy scalar {nd: False}  Scalar
//	complex                Complex
//	datetime / date / time time.Time / Date / TimeOfDay
//	timedelta              Timedelta
//	Decimal / UUID         Decimal / uuid.UUID
//
// Marker keys are recognised whether sent as bin (as Python writes them) or
// str. A map that carries a marker but lacks a key the Python decoder reads
// stays a plain map, as in Python. Rejected: ext types, object arrays (kind
// 'O', pickles), structured arrays (kind 'V'), dtypes outside tensor.DType,
// the 2-byte void dtype "<V2" (see DecodeTensors), map keys that are not
// str or bin, and bytes after the value.
func DecodeMsgpack(body []byte) (any, error) {
	r := mpReader{buf: body}
	v, err := r.value()
	if err != nil {
		return nil, err
	}
	return v, r.end()
}

type mpKind uint8

const (
	mpNil mpKind = iota
	mpBool
	mpInt  // any integer that fits int64
	mpUint // an integer above math.MaxInt64
	mpFloat32
	mpFloat64
	mpStr
	mpBin
	mpArray
	mpMap
)

var mpKindNames = [...]string{"nil", "bool", "int", "int", "float", "float", "str", "bin", "array", "map"}

// mpHeader is one decoded type byte with its immediate data.
type mpHeader struct {
	kind mpKind
	at   int // body offset of the type byte
	b    bool
	i    int64
	u    uint64
	f    float64 // float32 values widened
	f32  float32 // a float32 as sent (widening would quiet a signalling NaN)
	n    int     // bytes of a str or bin, elements of an array or map
}

// mpReader walks a msgpack body in place, so that bin payloads can be
// returned as slices of it.
type mpReader struct {
	buf   []byte
	off   int
	depth int
	// input names the predict input being decoded (DecodeTensors); errors
	// about its value then start with `input "name": `.
	input string
	// voidAs is what a 2-byte void dtype means in the current input: see
	// resolveDType.
	voidAs tensor.DType
	// inPlace allows moving and byte-swapping tensor data inside buf
	// (DecodeTensorsInPlace), instead of copying it to align or swap it.
	inPlace bool
}

func (r *mpReader) syntaxErr(at int, format string, args ...any) error {
	return malformed("Invalid msgpack payload: %s at byte %d", fmt.Sprintf(format, args...), at)
}

// valueErr reports a well-formed value that is not acceptable.
func (r *mpReader) valueErr(at int, err error) error {
	if r.input != "" {
		return inputError(r.input, err)
	}
	return malformed("Invalid msgpack payload: value at byte %d: %w", at, err)
}

func (r *mpReader) end() error {
	if r.off != len(r.buf) {
		return r.syntaxErr(r.off, "%d extra bytes after the value", len(r.buf)-r.off)
	}
	return nil
}

// uintN reads an n-byte big-endian length or number.
func (r *mpReader) uintN(n int) (uint64, error) {
	if len(r.buf)-r.off < n {
		return 0, r.syntaxErr(len(r.buf), "unexpected end of data")
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
	return binary.BigEndian.Uint64(b), nil
}

// header reads a type byte and its length or scalar payload. Lengths are
// checked against the bytes left, so callers may allocate by them.
func (r *mpReader) header() (mpHeader, error) {
	h := mpHeader{at: r.off}
	if r.off >= len(r.buf) {
		return h, r.syntaxErr(r.off, "unexpected end of data")
	}
	c := r.buf[r.off]
	r.off++
	switch {
	case c <= 0x7f:
		h.kind, h.i = mpInt, int64(c)
		return h, nil
	case c >= 0xe0:
		h.kind, h.i = mpInt, int64(int8(c))
		return h, nil
	case c <= 0x8f:
		h.kind, h.n = mpMap, int(c&0x0f)
		return h, r.checkLen(h)
	case c <= 0x9f:
		h.kind, h.n = mpArray, int(c&0x0f)
		return h, r.checkLen(h)
	case c <= 0xbf:
		h.kind, h.n = mpStr, int(c&0x1f)
		return h, r.checkLen(h)
	}
	var err error
	var v uint64
	switch c {
	case 0xc0:
		h.kind = mpNil
	case 0xc2, 0xc3:
		h.kind, h.b = mpBool, c == 0xc3
	case 0xca:
		v, err = r.uintN(4)
		h.kind, h.f32 = mpFloat32, math.Float32frombits(uint32(v))
		h.f = float64(h.f32)
	case 0xcb:
		v, err = r.uintN(8)
		h.kind, h.f = mpFloat64, math.Float64frombits(v)
	case 0xcc, 0xcd, 0xce, 0xcf:
		v, err = r.uintN(1 << (c - 0xcc))
		h.kind, h.i = mpInt, int64(v)
		if v > math.MaxInt64 {
			h.kind, h.u = mpUint, v
		}
	case 0xd0, 0xd1, 0xd2, 0xd3:
		n := 1 << (c - 0xd0)
		v, err = r.uintN(n)
		h.kind, h.i = mpInt, int64(v<<(64-8*n))>>(64-8*n) // sign-extend
	case 0xc4, 0xc5, 0xc6:
		return r.sized(h, mpBin, 1<<(c-0xc4))
	case 0xd9, 0xda, 0xdb:
		return r.sized(h, mpStr, 1<<(c-0xd9))
	case 0xdc, 0xdd:
		return r.sized(h, mpArray, 2<<(c-0xdc))
	case 0xde, 0xdf:
		return r.sized(h, mpMap, 2<<(c-0xde))
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return h, r.syntaxErr(h.at, "ext types are not supported (type byte %#x)", c)
	default: // 0xc1
		return h, r.syntaxErr(h.at, "reserved type byte %#x", c)
	}
	return h, err
}

// sized reads the lenBytes-byte length of a str, bin, array or map.
func (r *mpReader) sized(h mpHeader, kind mpKind, lenBytes int) (mpHeader, error) {
	n, err := r.uintN(lenBytes)
	if err != nil {
		return h, err
	}
	h.kind, h.n = kind, int(n) // at most 2^32-1: fits int on 64-bit platforms
	return h, r.checkLen(h)
}

// checkLen rejects lengths that the rest of the body cannot hold: a str or
// bin needs n bytes, an array n values and a map 2n, each at least a byte.
func (r *mpReader) checkLen(h mpHeader) error {
	need, unit := h.n, "bytes"
	switch h.kind {
	case mpArray:
		unit = "elements"
	case mpMap:
		need, unit = 2*h.n, "entries"
	}
	if left := len(r.buf) - r.off; need > left {
		return r.syntaxErr(h.at, "%s of %d %s exceeds the %d bytes left", mpKindNames[h.kind], h.n, unit, left)
	}
	return nil
}

// take returns the next n bytes (already checked by header) as a slice of
// the body whose capacity ends with it, so appends cannot clobber the body.
func (r *mpReader) take(n int) []byte {
	b := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *mpReader) str(h mpHeader) (string, error) {
	b := r.take(h.n)
	if !utf8.Valid(b) {
		return "", r.syntaxErr(h.at, "str is not valid UTF-8")
	}
	return string(b), nil
}

func (r *mpReader) enter(at int) error {
	if r.depth == MaxDepth {
		return r.syntaxErr(at, "nesting deeper than %d", MaxDepth)
	}
	r.depth++
	return nil
}

func (r *mpReader) value() (any, error) {
	h, err := r.header()
	if err != nil {
		return nil, err
	}
	switch h.kind {
	case mpNil:
		return nil, nil
	case mpBool:
		return h.b, nil
	case mpInt:
		return h.i, nil
	case mpUint:
		return h.u, nil
	case mpFloat32:
		return h.f32, nil
	case mpFloat64:
		return h.f, nil
	case mpStr:
		return r.str(h)
	case mpBin:
		return r.take(h.n), nil
	case mpArray:
		return r.array(h)
	}
	return r.mapValue(h)
}

func (r *mpReader) array(h mpHeader) ([]any, error) {
	if err := r.enter(h.at); err != nil {
		return nil, err
	}
	defer func() { r.depth-- }()
	out := make([]any, h.n)
	for i := range out {
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// key reads a map key; Python's strict_map_key allows only str and bin.
func (r *mpReader) key() (string, error) {
	h, err := r.header()
	if err != nil {
		return "", err
	}
	switch h.kind {
	case mpStr:
		return r.str(h)
	case mpBin:
		return string(r.take(h.n)), nil
	}
	return "", r.syntaxErr(h.at, "map key must be str or bin, got %s", mpKindNames[h.kind])
}

func (r *mpReader) mapValue(h mpHeader) (any, error) {
	if err := r.enter(h.at); err != nil {
		return nil, err
	}
	defer func() { r.depth-- }()
	f := make(fields, h.n)
	for i := range f {
		k, err := r.key()
		if err != nil {
			return nil, err
		}
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		f[i] = field{k, v}
	}
	v, err := r.special(f)
	if err != nil {
		return nil, r.valueErr(h.at, err)
	}
	return v, nil
}

type field struct {
	key string
	val any
}

// fields are a map's entries in wire order.
type fields []field

// get looks a key up as Python does on the decoded dict: the last duplicate
// wins.
func (f fields) get(key string) (any, bool) {
	for i := len(f) - 1; i >= 0; i-- {
		if f[i].key == key {
			return f[i].val, true
		}
	}
	return nil, false
}

func (f fields) toMap() map[string]any {
	m := make(map[string]any, len(f))
	for _, e := range f {
		m[e.key] = e.val
	}
	return m
}

// trussMarkers are Truss's extension types, in the order its decoder tests
// them.
var trussMarkers = [...]struct {
	key    string
	decode func(data any) (any, error)
}{
	{"__dt_datetime_iso__", decodeDateTime},
	{"__dt_date_iso__", decodeDate},
	{"__dt_time_iso__", decodeTimeOfDay},
	{"__dt_timedelta__", decodeTimedelta},
	{"__decimal__", decodeDecimal},
	{"__uuid__", decodeUUID},
}

// special turns a map carrying a marker key into the value it stands for,
// following Truss's decoder and then msgpack_numpy's. Where Python would
// raise KeyError (a marker without the keys it reads) the map stays plain.
func (r *mpReader) special(f fields) (any, error) {
	for _, m := range trussMarkers {
		if _, ok := f.get(m.key); ok {
			if data, ok := f.get("data"); ok {
				return m.decode(data)
			}
		}
	}
	if nd, ok := f.get("nd"); ok {
		return r.numpy(f, nd)
	}
	if _, ok := f.get("complex"); ok {
		if data, ok := f.get("data"); ok {
			return decodeComplex(data)
		}
	}
	return f.toMap(), nil
}

func (r *mpReader) numpy(f fields, nd any) (any, error) {
	typ, hasType := f.get("type")
	data, hasData := f.get("data")
	if isArray, _ := nd.(bool); isArray {
		shape, hasShape := f.get("shape")
		if !hasType || !hasShape || !hasData {
			return f.toMap(), nil
		}
		kind, _ := f.get("kind") // absent in msgpack_numpy's oldest format
		return r.ndarray(typ, kind, shape, data)
	}
	if !hasType || !hasData {
		return f.toMap(), nil
	}
	return r.scalar(typ, data)
}

func (r *mpReader) ndarray(typ, kind, shapeV, dataV any) (tensor.Tensor, error) {
	var d tensor.DType
	var bigEndian bool
	var err error
	switch k, _ := textOf(kind); k {
	case "O":
		return tensor.Tensor{}, fmt.Errorf("object arrays (kind 'O', pickled Python objects) are not supported")
	case "V":
		d, err = r.structuredDType(typ)
	default:
		d, bigEndian, err = r.typeField(typ)
	}
	if err != nil {
		return tensor.Tensor{}, err
	}
	shape, err := shapeOf(shapeV)
	if err != nil {
		return tensor.Tensor{}, err
	}
	data, ok := dataV.([]byte)
	if !ok {
		return tensor.Tensor{}, fmt.Errorf("ndarray data must be bin, got %s", typeName(dataV))
	}
	if r.inPlace && d.Valid() {
		data, bigEndian = r.alignInPlace(d, bigEndian, data)
	}
	return makeTensor(d, bigEndian, shape, data)
}

// alignInPlace moves data back inside the body to the nearest address
// aligned for d, and swaps its bytes there, so that the tensor can alias the
// body instead of being copied. The bytes it overwrites are data's own bin
// header and map key, at least 7 bytes (bin8 header plus a fixstr "data"),
// which have been decoded already; elements wider than 8 bytes need no more
// than 8-byte alignment and are left to makeTensor.
func (r *mpReader) alignInPlace(d tensor.DType, bigEndian bool, data []byte) ([]byte, bool) {
	if len(data) == 0 || d.Size() > 8 {
		return data, bigEndian
	}
	shift := int(uintptr(unsafe.Pointer(unsafe.SliceData(data))) & uintptr(d.Size()-1))
	start := int(uintptr(unsafe.Pointer(unsafe.SliceData(data))) - uintptr(unsafe.Pointer(unsafe.SliceData(r.buf))))
	if shift > 7 || start < shift || start+len(data) > len(r.buf) {
		return data, bigEndian
	}
	if shift > 0 {
		moved := r.buf[start-shift : start-shift+len(data) : start-shift+len(data)]
		copy(moved, data)
		data = moved
	}
	if bigEndian {
		tensor.SwapBytes(d, data)
	}
	return data, false
}

func (r *mpReader) scalar(typ, dataV any) (Scalar, error) {
	d, bigEndian, err := r.typeField(typ)
	if err != nil {
		return Scalar{}, err
	}
	data, ok := dataV.([]byte)
	if !ok {
		return Scalar{}, fmt.Errorf("numpy scalar data must be bin, got %s", typeName(dataV))
	}
	if len(data) != d.Size() {
		return Scalar{}, fmt.Errorf("numpy scalar of %v needs %d bytes, data has %d", d, d.Size(), len(data))
	}
	t, err := makeTensor(d, bigEndian, []int64{}, data)
	return Scalar{t}, err
}

func (r *mpReader) typeField(typ any) (tensor.DType, bool, error) {
	s, ok := textOf(typ)
	if !ok {
		return tensor.Invalid, false, fmt.Errorf("ndarray type must be a str, got %s", typeName(typ))
	}
	return resolveDType(s, r.voidAs)
}

// structuredDType accepts the one structured descr that is not a record:
// [("", "<V2")], which msgpack_numpy sends for an ml_dtypes bfloat16 array
// (its dtype has kind 'V'), and only for an input declared bfloat16.
func (r *mpReader) structuredDType(typ any) (tensor.DType, error) {
	if descr, ok := typ.([]any); ok && len(descr) == 1 && r.voidAs == tensor.BFloat16 {
		if f, ok := descr[0].([]any); ok && len(f) == 2 {
			name, ok1 := textOf(f[0])
			ts, ok2 := textOf(f[1])
			if ok1 && ok2 && name == "" && isVoid2(ts) {
				return tensor.BFloat16, nil
			}
		}
	}
	return tensor.Invalid, fmt.Errorf("structured arrays (kind 'V') are not supported")
}

// shapeOf reads an ndarray shape: an array of non-negative ints, or one int
// (numpy accepts both).
func shapeOf(v any) ([]int64, error) {
	if n, ok := v.(int64); ok {
		v = []any{n}
	}
	dims, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("ndarray shape must be an array of ints, got %s", typeName(v))
	}
	if len(dims) > maxDims {
		return nil, fmt.Errorf("ndarray shape has %d dimensions, more than %d", len(dims), maxDims)
	}
	shape := make([]int64, len(dims))
	for i, d := range dims {
		n, ok := d.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("ndarray shape must hold non-negative ints, got %s", describe(d))
		}
		shape[i] = n
	}
	return shape, nil
}

// textOf accepts str and bin, as msgpack_numpy's tostr does.
func textOf(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}

func decodeComplex(data any) (any, error) {
	s, ok := textOf(data)
	if !ok {
		return nil, fmt.Errorf("complex data must be a str, got %s", typeName(data))
	}
	c, err := parsePyComplex(s)
	return Complex(c), err
}

func decodeDateTime(data any) (any, error) {
	s, ok := data.(string)
	if !ok {
		return nil, fmt.Errorf("datetime data must be a str, got %s", typeName(data))
	}
	return parseISODateTime(s)
}

func decodeDate(data any) (any, error) {
	s, ok := data.(string)
	if !ok {
		return nil, fmt.Errorf("date data must be a str, got %s", typeName(data))
	}
	return parseISODate(s)
}

func decodeTimeOfDay(data any) (any, error) {
	s, ok := data.(string)
	if !ok {
		return nil, fmt.Errorf("time data must be a str, got %s", typeName(data))
	}
	return parseISOTime(s)
}

func decodeTimedelta(data any) (any, error) {
	parts, ok := data.([]any)
	if !ok || len(parts) != 3 {
		return nil, fmt.Errorf("timedelta data must be [days, seconds, microseconds], got %s", describe(data))
	}
	var v [3]int64
	for i, p := range parts {
		switch p := p.(type) {
		case int64:
			v[i] = p
		case uint64:
			return nil, errTimedeltaRange
		default:
			return nil, fmt.Errorf("timedelta data must hold ints, got %s", typeName(p))
		}
	}
	return normalizeTimedelta(v[0], v[1], v[2])
}

func decodeDecimal(data any) (any, error) {
	s, ok := data.(string)
	if !ok {
		return nil, fmt.Errorf("decimal data must be a str, got %s", typeName(data))
	}
	return canonicalDecimal(s)
}

func decodeUUID(data any) (any, error) {
	s, ok := data.(string)
	if !ok {
		return nil, fmt.Errorf("UUID data must be a str, got %s", typeName(data))
	}
	return parsePyUUID(s)
}

// typeName names a decoded value's wire type for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "bool"
	case int64, uint64:
		return "int"
	case float32, float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bin"
	case []any:
		return "array"
	case map[string]any:
		return "map"
	case tensor.Tensor:
		return "ndarray"
	case Scalar:
		return "numpy scalar"
	}
	return fmt.Sprintf("%T", v)
}

// describe shows a small decoded value, or its type name.
func describe(v any) string {
	switch v := v.(type) {
	case int64:
		return strconv.FormatInt(v, 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	}
	return typeName(v)
}
