// Package onnxgen builds small ONNX models from Go code: a Builder for
// arbitrary graphs and generators for the models that tests, benchmarks and
// the server's built-in default model need.
//
// Contract:
//   - Output is a serialized ModelProto of IR version 8 (IRVersion) that
//     imports one opset of the default domain (17 for the generators). The
//     weights are stored inline as raw_data, so a model is one self-contained
//     byte slice; ONNX Runtime 1.24 loads every generated model.
//   - Generation is deterministic: the same arguments give the same bytes.
//     Weights come from math/rand/v2's PCG seeded with the caller's seed, so a
//     different seed gives different weights.
//   - Every call returns fresh bytes that the caller owns.
//   - Misuse (duplicate or undefined names, invalid dtypes or dimensions,
//     impossible options) is an error, never a panic.
//
// Functions are safe for concurrent use; a Builder is not.
package onnxgen
