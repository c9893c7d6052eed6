// Package onnxgen builds small ONNX models from Go code: a Builder for
// arbitrary graphs and generators for the models that tests, benchmarks and
// the server's built-in default model need.
//
// Contract:
//   - Output is a serialized ModelProto of IR version 8 (IRVersion) that
//     imports one opset of the default domain (17 for the generators) and,
//     where a graph uses them, ONNX Runtime's contrib domains. The
//     generators that return bytes store the weights inline as raw_data, so
//     such a model is one self-contained byte slice; WritePhi3Dir writes a
//     directory instead, with the weights in an external data file beside
//     model.onnx, and that model must be loaded from its file path. ONNX
//     Runtime 1.24 loads every generated model.
//   - Generation is deterministic: the same arguments give the same bytes.
//     Weights come from math/rand/v2's PCG seeded with the caller's seed, so a
//     different seed gives different weights.
//   - Every call returns fresh bytes that the caller owns.
//   - Misuse (duplicate or undefined names, invalid dtypes or dimensions,
//     impossible options) is an error, never a panic.
//
// Functions are safe for concurrent use (WritePhi3Dir with distinct
// directories); a Builder is not.
package onnxgen
