package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/modelserver/modelserver/tensor"
)

// jsonScanner parses a JSON predict body in place. Syntax is what Python's
// json.loads accepts (NaN, Infinity and -Infinity included), and syntax
// errors read like Python's ("Expecting value: line 1 column 5 (char 4)",
// with char counting bytes).
type jsonScanner struct {
	buf []byte
	off int
	// input names the input whose value is being parsed, for errors.
	input string
}

// decodeTensorsJSON decodes a top-level object of input name to nested list
// or NumpyArrayField. arrayField reports whether any input used the latter.
func decodeTensorsJSON(body []byte, dtypeOf func(string) (tensor.DType, bool)) (out map[string]tensor.Tensor, arrayField bool, err error) {
	s := jsonScanner{buf: bytes.TrimPrefix(body, []byte("\ufeff"))} // json.loads(bytes) drops a UTF-8 BOM
	s.skipWS()
	if s.peek() != '{' {
		return nil, false, s.notAnObject()
	}
	s.off++
	out = make(map[string]tensor.Tensor)
	s.skipWS()
	if s.peek() == '}' {
		s.off++
		return out, false, s.end()
	}
	for {
		s.skipWS()
		if s.peek() != '"' {
			return nil, false, s.syntaxErr(s.off, "Expecting property name enclosed in double quotes")
		}
		raw, err := s.str()
		if err != nil {
			return nil, false, err
		}
		name := string(raw)
		if err := s.colon(); err != nil {
			return nil, false, err
		}
		declared, ok := dtypeOf(name)
		if !ok {
			return nil, false, malformed("input %q is not an input of this model", name)
		}
		s.input = name
		t, isField, err := s.inputValue(declared)
		if err != nil {
			return nil, false, err
		}
		out[name], arrayField = t, arrayField || isField
		if done, err := s.nextMember('}'); err != nil || done {
			if err == nil {
				err = s.end()
			}
			return out, arrayField, err
		}
	}
}

// notAnObject distinguishes invalid JSON from valid JSON of the wrong kind.
func (s *jsonScanner) notAnObject() error {
	c := s.peek()
	if err := s.skipValue(0); err != nil {
		return err
	}
	if err := s.end(); err != nil {
		return err
	}
	kind := "a number"
	switch c {
	case '[':
		kind = "an array"
	case '"':
		kind = "a string"
	case 't', 'f':
		kind = "a bool"
	case 'n':
		kind = "null"
	}
	return malformed("request body must be a JSON object mapping input names to tensors, got %s", kind)
}

func (s *jsonScanner) syntaxErr(at int, msg string) error {
	line := bytes.Count(s.buf[:at], []byte("\n")) + 1
	col := at - bytes.LastIndexByte(s.buf[:at], '\n')
	return malformed("Invalid JSON payload: %s: line %d column %d (char %d)", msg, line, col, at)
}

// valueErr reports a well-formed value that does not suit the input.
func (s *jsonScanner) valueErr(at int, err error) error {
	return inputError(s.input, fmt.Errorf("%w (char %d)", err, at))
}

func (s *jsonScanner) end() error {
	s.skipWS()
	if s.off != len(s.buf) {
		return s.syntaxErr(s.off, "Extra data")
	}
	return nil
}

// peek returns the next byte, or 0 at the end of the body.
func (s *jsonScanner) peek() byte {
	if s.off < len(s.buf) {
		return s.buf[s.off]
	}
	return 0
}

func (s *jsonScanner) skipWS() {
	for s.off < len(s.buf) {
		switch s.buf[s.off] {
		case ' ', '\t', '\n', '\r':
			s.off++
		default:
			return
		}
	}
}

func (s *jsonScanner) colon() error {
	s.skipWS()
	if s.peek() != ':' {
		return s.syntaxErr(s.off, "Expecting ':' delimiter")
	}
	s.off++
	s.skipWS()
	return nil
}

// nextMember consumes the ',' or closing byte after an object member or
// array element; done reports the closing byte.
func (s *jsonScanner) nextMember(closing byte) (done bool, err error) {
	s.skipWS()
	switch s.peek() {
	case ',':
		s.off++
		return false, nil
	case closing:
		s.off++
		return true, nil
	}
	return false, s.syntaxErr(s.off, "Expecting ',' delimiter")
}

func (s *jsonScanner) hasLiteral(lit string) bool {
	return len(s.buf)-s.off >= len(lit) && string(s.buf[s.off:s.off+len(lit)]) == lit
}

// str parses a string at s.off. Without escapes the result aliases the body.
func (s *jsonScanner) str() ([]byte, error) {
	start := s.off
	s.off++
	// Fast path, for keys and for megabytes of base64 alike: the string
	// ends at the next quote and holds no escape or control character.
	if n := bytes.IndexByte(s.buf[s.off:], '"'); n >= 0 {
		raw := s.buf[s.off : s.off+n]
		if bytes.IndexByte(raw, '\\') < 0 && !hasControl(raw) {
			s.off += n + 1
			if !utf8.Valid(raw) {
				return nil, s.syntaxErr(start, "Invalid UTF-8 in string starting at")
			}
			return raw, nil
		}
	}
	var out []byte
	for {
		if s.off >= len(s.buf) {
			return nil, s.syntaxErr(start, "Unterminated string starting at")
		}
		switch c := s.buf[s.off]; {
		case c == '"':
			s.off++
			if !utf8.Valid(out) {
				return nil, s.syntaxErr(start, "Invalid UTF-8 in string starting at")
			}
			return out, nil
		case c < 0x20:
			return nil, s.syntaxErr(s.off, "Invalid control character at")
		case c == '\\':
			var err error
			if out, err = s.escape(out); err != nil {
				return nil, err
			}
		default:
			out = append(out, c)
			s.off++
		}
	}
}

// hasControl reports whether b holds a byte below 0x20, eight bytes at a
// time: subtracting 0x20 from every byte sets the top bit of a byte whose
// top bit was clear only if that byte, or a lower one whose borrow ran on,
// was below 0x20, so the test has no false hits.
func hasControl(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		if (x-0x20*ones)&^x&highs != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// escape decodes one backslash escape at s.off and appends it to out. Lone
// surrogates, which Go strings cannot hold, become U+FFFD.
func (s *jsonScanner) escape(out []byte) ([]byte, error) {
	at := s.off
	if at+1 >= len(s.buf) {
		return nil, s.syntaxErr(at, "Unterminated string starting at")
	}
	c := s.buf[at+1]
	s.off += 2
	switch c {
	case '"', '\\', '/':
		return append(out, c), nil
	case 'b':
		return append(out, '\b'), nil
	case 'f':
		return append(out, '\f'), nil
	case 'n':
		return append(out, '\n'), nil
	case 'r':
		return append(out, '\r'), nil
	case 't':
		return append(out, '\t'), nil
	case 'u':
	default:
		return nil, s.syntaxErr(at, "Invalid \\escape")
	}
	r, ok := s.hex4()
	if !ok {
		return nil, s.syntaxErr(at, "Invalid \\uXXXX escape")
	}
	if utf16.IsSurrogate(r) && s.hasLiteral(`\u`) {
		save := s.off
		s.off += 2
		if r2, ok := s.hex4(); ok && utf16.DecodeRune(r, r2) != utf8.RuneError {
			return utf8.AppendRune(out, utf16.DecodeRune(r, r2)), nil
		}
		s.off = save
	}
	return utf8.AppendRune(out, r), nil
}

func (s *jsonScanner) hex4() (rune, bool) {
	if len(s.buf)-s.off < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.buf[s.off:s.off+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	s.off += 4
	return rune(v), true
}

// number scans a JSON number at s.off and reports whether it is an integer
// (no fraction or exponent); end == start means there is none.
func (s *jsonScanner) number() (end int, isInt bool) {
	b, i := s.buf, s.off
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return s.off, false
	}
	isInt = true
	if i+1 < len(b) && b[i] == '.' && isDigit(b[i+1]) {
		isInt = false
		for i += 2; i < len(b) && isDigit(b[i]); i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		j := i + 1
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j < len(b) && isDigit(b[j]) {
			isInt = false
			for i = j; i < len(b) && isDigit(b[i]); i++ {
			}
		}
	}
	return i, isInt
}

// skipValue checks and skips any JSON value (members of a NumpyArrayField
// that are not read, or a body that is not an object).
func (s *jsonScanner) skipValue(depth int) error {
	if depth > MaxDepth {
		return s.syntaxErr(s.off, "Nesting too deep")
	}
	switch c := s.peek(); {
	case c == '"':
		_, err := s.str()
		return err
	case c == '[' || c == '{':
		closing := byte(']')
		if c == '{' {
			closing = '}'
		}
		s.off++
		s.skipWS()
		if s.peek() == closing {
			s.off++
			return nil
		}
		for {
			s.skipWS()
			if c == '{' {
				if s.peek() != '"' {
					return s.syntaxErr(s.off, "Expecting property name enclosed in double quotes")
				}
				if _, err := s.str(); err != nil {
					return err
				}
				if err := s.colon(); err != nil {
					return err
				}
			}
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
			if done, err := s.nextMember(closing); err != nil || done {
				return err
			}
		}
	}
	for _, lit := range [...]string{"true", "false", "null", "NaN", "Infinity", "-Infinity"} {
		if s.hasLiteral(lit) {
			s.off += len(lit)
			return nil
		}
	}
	if end, _ := s.number(); end > s.off {
		s.off = end
		return nil
	}
	return s.syntaxErr(s.off, "Expecting value")
}

// inputValue parses one input: a nested list, a bare number (a 0-d
// tensor) or a NumpyArrayField object.
func (s *jsonScanner) inputValue(declared tensor.DType) (t tensor.Tensor, arrayField bool, err error) {
	at := s.off
	switch s.peek() {
	case '{':
		t, err = s.arrayField(declared)
		return t, true, err
	case '"', 'n':
		if err := s.skipValue(0); err != nil {
			return t, false, err
		}
		return t, false, s.valueErr(at, errors.New("expected a list of numbers or a NumpyArrayField object"))
	}
	b := newListBuilder(declared)
	if s.peek() == '[' {
		err = s.list(b)
	} else {
		err = s.leaf(b)
	}
	if err != nil {
		return t, false, err
	}
	t, err = b.tensor()
	if err != nil {
		return t, false, s.valueErr(at, err)
	}
	return t, false, nil
}

// list parses a nested list at s.off into b.
func (s *jsonScanner) list(b *listBuilder) error {
	at := s.off
	s.off++
	if err := b.open(); err != nil {
		return s.valueErr(at, err)
	}
	s.skipWS()
	n := 0
	if s.peek() != ']' {
		for {
			s.skipWS()
			var err error
			if s.peek() == '[' {
				err = s.list(b)
			} else {
				err = s.leaf(b)
			}
			if err != nil {
				return err
			}
			n++
			done, err := s.nextMember(']')
			if err != nil {
				return err
			}
			if done {
				break
			}
		}
	} else {
		s.off++
	}
	if err := b.close(n); err != nil {
		return s.valueErr(at, err)
	}
	return nil
}

// leaf parses one number, bool, null, NaN or ±Infinity into b.
func (s *jsonScanner) leaf(b *listBuilder) error {
	at := s.off
	var ok bool
	switch c := s.peek(); {
	case c == 't' && s.hasLiteral("true"):
		ok = b.putBool(true)
		s.off += 4
	case c == 'f' && s.hasLiteral("false"):
		ok = b.putBool(false)
		s.off += 5
	case c == 'n' && s.hasLiteral("null"):
		ok = b.putNull()
		s.off += 4
	case c == 'N' && s.hasLiteral("NaN"):
		ok = b.putFloat(pyNaN)
		s.off += 3
	case c == 'I' && s.hasLiteral("Infinity"):
		ok = b.putFloat(math.Inf(1))
		s.off += 8
	case c == '-' && s.hasLiteral("-Infinity"):
		ok = b.putFloat(math.Inf(-1))
		s.off += 9
	default:
		end, isInt := s.number()
		if end == at {
			return s.syntaxErr(at, "Expecting value")
		}
		s.off = end
		ok = s.putNumber(b, s.buf[at:end], isInt)
	}
	if err := b.leaf(); err != nil {
		return s.valueErr(at, err)
	}
	if !ok {
		return s.valueErr(at, fmt.Errorf("%s does not fit %v", s.buf[at:s.off], b.dtype))
	}
	return nil
}

// putNumber converts a number token. Integers go to integer dtypes exactly;
// everything else is parsed as a float64 first, as json.loads does, so the
// result matches numpy's cast of the Python value bit for bit.
func (s *jsonScanner) putNumber(b *listBuilder, tok []byte, isInt bool) bool {
	if isInt && isIntegerDType(b.dtype) {
		neg, mag, ok := parseJSONInt(tok)
		return ok && b.putInt(neg, mag)
	}
	// The token outlives neither the call nor the body; on a range error
	// ParseFloat returns ±Inf or 0, which is what Python gives.
	f, _ := strconv.ParseFloat(unsafe.String(unsafe.SliceData(tok), len(tok)), 64)
	return b.putFloat(f)
}

func isIntegerDType(d tensor.DType) bool {
	return d == tensor.Bool || (d >= tensor.Int8 && d <= tensor.Uint64)
}

// parseJSONInt parses an integer token exactly; ok is false above 2^64-1.
func parseJSONInt(tok []byte) (neg bool, mag uint64, ok bool) {
	if tok[0] == '-' {
		neg, tok = true, tok[1:]
	}
	for _, c := range tok {
		d := uint64(c - '0')
		if mag > (math.MaxUint64-d)/10 {
			return neg, 0, false
		}
		mag = mag*10 + d
	}
	return neg && mag != 0, mag, true
}

// arrayField parses a NumpyArrayField object {"data_b64", "shape", "dtype"}
// (other members are ignored, as pydantic does).
func (s *jsonScanner) arrayField(declared tensor.DType) (tensor.Tensor, error) {
	at := s.off
	s.off++
	var data, dtype []byte
	var shape []int64
	var seen [3]bool
	s.skipWS()
	if s.peek() == '}' {
		s.off++
	} else {
		for done := false; !done; {
			s.skipWS()
			if s.peek() != '"' {
				return tensor.Tensor{}, s.syntaxErr(s.off, "Expecting property name enclosed in double quotes")
			}
			key, err := s.str()
			if err != nil {
				return tensor.Tensor{}, err
			}
			if err := s.colon(); err != nil {
				return tensor.Tensor{}, err
			}
			switch string(key) {
			case "data_b64":
				data, err = s.fieldString("data_b64")
				seen[0] = true
			case "shape":
				shape, err = s.shapeList()
				seen[1] = true
			case "dtype":
				dtype, err = s.fieldString("dtype")
				seen[2] = true
			default:
				err = s.skipValue(0)
			}
			if err != nil {
				return tensor.Tensor{}, err
			}
			if done, err = s.nextMember('}'); err != nil {
				return tensor.Tensor{}, err
			}
		}
	}
	for i, key := range [...]string{"data_b64", "shape", "dtype"} {
		if !seen[i] {
			return tensor.Tensor{}, s.valueErr(at, fmt.Errorf("NumpyArrayField needs \"data_b64\", \"shape\" and \"dtype\"; %q is missing", key))
		}
	}
	t, err := arrayFieldTensor(data, shape, string(dtype), declared)
	if err != nil {
		return tensor.Tensor{}, s.valueErr(at, err)
	}
	return t, nil
}

func (s *jsonScanner) fieldString(key string) ([]byte, error) {
	if s.peek() != '"' {
		at := s.off
		if err := s.skipValue(0); err != nil {
			return nil, err
		}
		return nil, s.valueErr(at, fmt.Errorf("NumpyArrayField %q must be a string", key))
	}
	return s.str()
}

// shapeList parses a NumpyArrayField shape: a list of non-negative
// integers, or one integer (numpy's reshape accepts both).
func (s *jsonScanner) shapeList() ([]int64, error) {
	at := s.off
	if s.peek() != '[' {
		d, err := s.dim()
		return []int64{d}, err
	}
	s.off++
	s.skipWS()
	shape := []int64{}
	if s.peek() == ']' {
		s.off++
		return shape, nil
	}
	for {
		s.skipWS()
		d, err := s.dim()
		if err != nil {
			return nil, err
		}
		if len(shape) == maxDims {
			return nil, s.valueErr(at, fmt.Errorf("NumpyArrayField shape has more than %d dimensions", maxDims))
		}
		shape = append(shape, d)
		if done, err := s.nextMember(']'); err != nil || done {
			return shape, err
		}
	}
}

func (s *jsonScanner) dim() (int64, error) {
	at := s.off
	end, isInt := s.number()
	if end == at || !isInt {
		if err := s.skipValue(0); err != nil {
			return 0, err
		}
		return 0, s.valueErr(at, errors.New("NumpyArrayField shape must hold non-negative integers"))
	}
	s.off = end
	neg, mag, ok := parseJSONInt(s.buf[at:end])
	if neg || !ok || mag > math.MaxInt64 {
		return 0, s.valueErr(at, fmt.Errorf("NumpyArrayField shape dimension %s is out of range", s.buf[at:end]))
	}
	return int64(mag), nil
}

// arrayFieldTensor decodes data_b64 into an aligned buffer after checking
// that its decoded length is what dtype and shape need.
func arrayFieldTensor(b64 []byte, shape []int64, dtype string, declared tensor.DType) (tensor.Tensor, error) {
	d, bigEndian, err := resolveDType(dtype, voidFor(declared))
	if err != nil {
		return tensor.Tensor{}, err
	}
	want, err := tensor.ByteSize(d, shape)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("shape %s of %v: %w", tensor.ShapeString(shape), d, err)
	}
	if bytes.ContainsAny(b64, "\r\n") { // b64decode skips line breaks; keep the length exact
		b64 = bytes.ReplaceAll(bytes.ReplaceAll(b64, []byte("\r"), nil), []byte("\n"), nil)
	}
	if len(b64)%4 != 0 {
		return tensor.Tensor{}, fmt.Errorf("data_b64 is not padded base64 (length %d)", len(b64))
	}
	have := len(b64) / 4 * 3
	if len(b64) > 0 {
		have -= bytes.Count(b64[len(b64)-2:], []byte("="))
	}
	if have != want {
		return tensor.Tensor{}, fmt.Errorf("shape %s of %v needs %d bytes, data has %d", tensor.ShapeString(shape), d, want, have)
	}
	buf := alignedBytes(len(b64)/4*3, d.Size())
	n, err := base64.StdEncoding.Decode(buf, b64)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("data_b64: %w", err)
	}
	if bigEndian { // buf is ours: swap in place
		tensor.SwapBytes(d, buf[:n])
	}
	// n == want: Decode rejects padding anywhere but at the end.
	return makeTensor(d, false, shape, buf[:n])
}

// voidFor says what a 2-byte void dtype means for an input declared d.
func voidFor(d tensor.DType) tensor.DType {
	if d == tensor.BFloat16 {
		return tensor.BFloat16
	}
	return tensor.Invalid
}
