// Package codec decodes request bodies and encodes response bodies in the
// wire formats of Baseten's Truss model server, so that Truss clients work
// against this server unchanged.
//
// Two body encodings exist (the request's Content-Type chooses, and the
// response mirrors the request):
//   - msgpack, as written by Python msgpack 1.x with msgpack_numpy 0.4.8 and
//     Truss's extension types: ndarrays and numpy scalars are maps with bin
//     marker keys (b"nd", b"type", b"kind", b"shape", b"data"); see
//     DecodeMsgpack for the full list of value types.
//   - JSON, where a tensor is either a nested list of numbers or a
//     NumpyArrayField object {"data_b64", "shape", "dtype"}.
//
// DecodeMsgpack and AppendMsgpack handle generic value trees (LLM requests,
// chains); DecodeTensors and EncodeTensors handle the predict body of a
// tensor model, a map from input or output name to tensor.
//
// Choices where Python offers no single answer:
//   - bfloat16 is written with the type name "bfloat16", which numpy parses
//     once ml_dtypes is imported. Read are "bfloat16" anywhere, and, for an
//     input the model declares bfloat16, the forms numpy itself produces for
//     an ml_dtypes array: typestr "<V2" and the descr [("", "<V2")].
//   - JSON numbers are parsed as float64 and then cast, as json.loads and
//     numpy do, so a decoded tensor matches what Truss would have built bit
//     for bit (float16 rounds once, from float64; bfloat16 via float32 as
//     in ml_dtypes). JSON lists are written with NaN and ±Inf as null.
//
// Contract:
//   - Buffer ownership: decoded tensors and []byte values may alias the
//     body (zero-copy); the caller must keep the body alive and unmodified
//     while it uses them, and copy them to keep them longer. A tensor's Data
//     aliases the body only when its first element is aligned to the element
//     size; otherwise, and whenever bytes must be swapped, it is a fresh
//     buffer with that alignment. Encoders never retain their arguments.
//   - Errors: every decode error that the body caused wraps ErrMalformed
//     (answer HTTP 400). Syntax errors start with "Invalid JSON payload: " or
//     "Invalid msgpack payload: "; errors about one input start with
//     `input "name": `. Encode errors are the server's fault and do not wrap
//     ErrMalformed.
//   - Limits: every length read from a body is checked against the bytes
//     left in it before anything is allocated, so memory use is bounded by a
//     small multiple of the body size. Nesting is limited to MaxDepth.
//   - Units: lengths and offsets are bytes, shapes are element counts,
//     Timedelta is Python's (days, seconds, microseconds), and datetimes
//     have microsecond precision.
//   - Concurrency: the package has no mutable state; all functions are safe
//     for concurrent use. Decoded values are plain data.
package codec
