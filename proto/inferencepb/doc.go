// Package inferencepb holds the Go protobuf and gRPC types of the Open
// Inference Protocol (KServe v2) service inference.GRPCInferenceService,
// with Triton's ModelStreamInfer extension, generated from
// grpc_service.proto.
//
// The protobuf package stays "inference", so full names are the standard
// ones (inference.GRPCInferenceService, inference.ModelInferRequest) and
// unmodified Triton and KServe clients can call a server built on these
// types. The protobuf runtime panics when two Go packages register the same
// full name, so a binary must not also link another generated copy of the
// schema (for example a Triton client library's).
//
// The generated files are checked in so that building needs no protoc.
// To regenerate them after changing grpc_service.proto, install protoc
// (Debian: protobuf-compiler) and the plugins whose versions match go.mod,
// then run go generate (with $(go env GOPATH)/bin on PATH).
// TestGeneratedCodeIsCurrent fails when the checked-in files differ from
// what the installed tools produce; it skips without the tools unless
// MODELSERVER_REQUIRE_PROTOC=1:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	go generate ./proto/...
package inferencepb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative grpc_service.proto
