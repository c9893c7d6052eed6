// Package onnxpb holds the Go protobuf types of the ONNX model format
// (ModelProto, GraphProto, TensorProto, ...), generated from onnx.proto3.
//
// The generated onnx.proto3.pb.go is checked in so that building needs no
// protoc. To regenerate it after changing onnx.proto3, install protoc
// (Debian: protobuf-compiler) and the protoc-gen-go whose version matches
// google.golang.org/protobuf in go.mod, then run go generate:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go generate ./internal/onnxpb
//
// The messages keep the upstream protobuf package name "onnx", so their full
// names are the standard ones (onnx.ModelProto, ...). The protobuf runtime
// panics when two Go packages register the same full name, so a binary must
// not also link another generated copy of the ONNX schema, such as the one in
// github.com/advancedclimatesystems/gonnx.
package onnxpb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative onnx.proto3
