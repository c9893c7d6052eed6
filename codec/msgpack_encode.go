package codec

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/modelserver/modelserver/tensor"
)

// Marker keys, written as bin as Python writes b"..." keys.
var (
	keyND      = []byte("nd")
	keyType    = []byte("type")
	keyKind    = []byte("kind")
	keyShape   = []byte("shape")
	keyData    = []byte("data")
	keyComplex = []byte("complex")
	emptyBin   = []byte{}
)

// EncodeMsgpack returns the msgpack encoding of v; see AppendMsgpack.
func EncodeMsgpack(v any) ([]byte, error) { return AppendMsgpack(nil, v) }

// AppendMsgpack appends the msgpack encoding of v to dst, byte for byte as
// Truss's truss_msgpack_serialize writes the corresponding Python value. v
// is a tree of the types DecodeMsgpack returns, plus int. Differences from a
// Python round trip: map keys are written in sorted order (Go maps have no
// order) and as str (as bin only when not UTF-8), and a float32 stays a
// float32 (Python widens it). Strings must be UTF-8.
func AppendMsgpack(dst []byte, v any) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if err := encodeValue(msgpack.NewEncoder(buf), v, 0); err != nil {
		return dst, err
	}
	return buf.Bytes(), nil
}

// The library's Encoder chooses the same encodings as Python's packer with
// use_bin_type=True: the smallest int format (uint formats for
// non-negative values), str8 for 32..255-byte strings, float64 as 0xcb.
func encodeValue(e *msgpack.Encoder, v any, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("codec: value nested deeper than %d", MaxDepth)
	}
	switch v := v.(type) {
	case nil:
		return e.EncodeNil()
	case bool:
		return e.EncodeBool(v)
	case int:
		return e.EncodeInt(int64(v))
	case int64:
		return e.EncodeInt(v)
	case uint64:
		return e.EncodeUint(v)
	case float32:
		return e.EncodeFloat32(v)
	case float64:
		return e.EncodeFloat64(v)
	case string:
		if !utf8.ValidString(v) {
			return fmt.Errorf("codec: string %q is not valid UTF-8, which Python cannot decode as str", v)
		}
		return e.EncodeString(v)
	case []byte:
		return encodeBin(e, v)
	case []any:
		return encodeArray(e, v, depth)
	case map[string]any:
		return encodeMap(e, v, depth)
	case tensor.Tensor:
		return encodeNDArray(e, v)
	case Scalar:
		return encodeScalar(e, v)
	case Complex:
		return errors.Join(e.EncodeMapLen(2),
			encodeBin(e, keyComplex), e.EncodeBool(true),
			encodeBin(e, keyData), e.EncodeString(formatPyComplex(complex128(v))))
	case time.Time:
		s, err := formatISODateTime(v)
		if err != nil {
			return fmt.Errorf("codec: %w", err)
		}
		return encodeMarked(e, "__dt_datetime_iso__", s)
	case Date:
		if err := v.validate(); err != nil {
			return fmt.Errorf("codec: %w", err)
		}
		return encodeMarked(e, "__dt_date_iso__", v.String())
	case TimeOfDay:
		if err := v.validate(); err != nil {
			return fmt.Errorf("codec: %w", err)
		}
		return encodeMarked(e, "__dt_time_iso__", v.String())
	case Timedelta:
		return encodeTimedelta(e, v)
	case Decimal:
		s, err := canonicalDecimal(string(v))
		if err != nil {
			return fmt.Errorf("codec: %w", err)
		}
		return encodeMarked(e, "__decimal__", string(s))
	case uuid.UUID:
		return encodeMarked(e, "__uuid__", v.String())
	}
	return fmt.Errorf("codec: cannot encode %T as msgpack", v)
}

// encodeBin writes b as bin, also when it is nil (the library would write
// nil, and Python bytes are never None).
func encodeBin(e *msgpack.Encoder, b []byte) error {
	if b == nil {
		b = emptyBin
	}
	return e.EncodeBytes(b)
}

func encodeArray(e *msgpack.Encoder, a []any, depth int) error {
	if err := e.EncodeArrayLen(len(a)); err != nil {
		return err
	}
	for _, x := range a {
		if err := encodeValue(e, x, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func encodeMap(e *msgpack.Encoder, m map[string]any, depth int) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if err := e.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, k := range keys {
		if err := errors.Join(encodeKey(e, k), encodeValue(e, m[k], depth+1)); err != nil {
			return err
		}
	}
	return nil
}

// encodeKey writes a map key as str, or as bin when it is not UTF-8: such
// keys can only have come from bin keys, and only bin carries them.
func encodeKey(e *msgpack.Encoder, k string) error {
	if !utf8.ValidString(k) {
		return e.EncodeBytes([]byte(k))
	}
	return e.EncodeString(k)
}

// encodeNDArray writes msgpack_numpy's ndarray map with its key order.
func encodeNDArray(e *msgpack.Encoder, t tensor.Tensor) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("codec: ndarray: %w", err)
	}
	err := errors.Join(e.EncodeMapLen(5),
		encodeBin(e, keyND), e.EncodeBool(true),
		encodeBin(e, keyType), e.EncodeString(wireTypestr(t.DType)),
		encodeBin(e, keyKind), encodeBin(e, emptyBin),
		encodeBin(e, keyShape), e.EncodeArrayLen(len(t.Shape)))
	for _, d := range t.Shape {
		err = errors.Join(err, e.EncodeInt(d))
	}
	return errors.Join(err, encodeBin(e, keyData), encodeBin(e, t.Data))
}

func encodeScalar(e *msgpack.Encoder, s Scalar) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("codec: numpy scalar: %w", err)
	}
	if len(s.Shape) != 0 {
		return fmt.Errorf("codec: numpy scalar has shape %s, want ()", tensor.ShapeString(s.Shape))
	}
	return errors.Join(e.EncodeMapLen(3),
		encodeBin(e, keyND), e.EncodeBool(false),
		encodeBin(e, keyType), e.EncodeString(wireTypestr(s.DType)),
		encodeBin(e, keyData), encodeBin(e, s.Data))
}

// encodeMarked writes a Truss extension map {b"<marker>": True, b"data": s}.
func encodeMarked(e *msgpack.Encoder, marker, s string) error {
	return errors.Join(e.EncodeMapLen(2),
		encodeBin(e, []byte(marker)), e.EncodeBool(true),
		encodeBin(e, keyData), e.EncodeString(s))
}

func encodeTimedelta(e *msgpack.Encoder, d Timedelta) error {
	n, err := normalizeTimedelta(d.Days, d.Seconds, d.Microseconds)
	if err != nil {
		return fmt.Errorf("codec: %w", err)
	}
	return errors.Join(e.EncodeMapLen(2),
		encodeBin(e, []byte("__dt_timedelta__")), e.EncodeBool(true),
		encodeBin(e, keyData), e.EncodeArrayLen(3),
		e.EncodeInt(n.Days), e.EncodeInt(n.Seconds), e.EncodeInt(n.Microseconds))
}
