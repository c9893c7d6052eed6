// Package oip implements the Open Inference Protocol (KServe v2, as served
// by Triton) on top of package tensor: the mapping between OIP datatypes and
// tensor.DType, the conversion of gRPC ModelInferRequest and
// ModelInferResponse messages (package proto/inferencepb) to and from
// tensors, and the OIP-over-HTTP transport (Handler) with JSON tensors and
// Triton's binary tensor data extension. The gRPC transport itself lives in
// package grpcserver and uses the conversions from here.
//
// Contract:
//   - Every error that blames the request (unknown datatype, shape that
//     overflows, element count or byte size that does not match the shape,
//     unknown output) wraps engine.ErrInvalidInput and names the tensor.
//     Sizes are checked before anything is allocated, so a small request
//     cannot make the server allocate a large buffer.
//   - Decoded input tensors may alias the request: raw_input_contents of a
//     ModelInferRequest and the binary section of an HTTP body are used in
//     place, not copied. Keep the request alive and unmodified while the
//     tensors are in use. Encoded responses alias the output tensors' data
//     the same way.
//   - Decoding checks what the protocol fixes (datatype, shape, sizes,
//     representation). Checking the tensors against the model (names,
//     dtypes, fixed dimensions) is engine.Signature.Check's job; the
//     transports call it before running the model.
//   - BYTES is recognised but not supported, because tensor has no string
//     dtype; requests using it are rejected as invalid input. complex64 and
//     complex128 have no OIP datatype.
//
// # Output representation
//
// gRPC responses carry outputs in raw_output_contents by default, as Triton
// does, and every Triton and KServe client reads them. A request whose
// requested outputs carry the parameter binary_data=false gets typed
// InferTensorContents instead, for all outputs, because the protocol forbids
// mixing raw and typed contents in one response; such a request may not also
// ask binary_data=true for another output, nor ask for an FP16 or BF16
// output, which have no typed field.
//
// HTTP responses carry an output as JSON data unless the output's
// binary_data parameter is true, or it is absent and the request parameter
// binary_data_output is true, or the request was a raw binary request; then
// the output goes to the binary section with a binary_data_size parameter.
// FP16 and BF16 outputs always go to the binary section, since JSON has no
// representation for them (Triton refuses them as JSON). NaN and ±Inf are
// written as JSON null; use binary outputs where they matter.
//
// All functions and Handler's methods are safe for concurrent use.
package oip
