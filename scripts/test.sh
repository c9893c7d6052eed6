#!/usr/bin/env bash
# Sets up a fresh Debian machine for the test suite and runs it: Debian
# packages for the interop tests, the pinned ONNX Runtime, then vet, build and
# the race-enabled tests. CI calls this script (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(curl protobuf-compiler python3 python3-numpy python3-msgpack python3-msgpack-numpy python3-requests python3-websockets python3-jinja2)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

scripts/install-onnxruntime.sh

# grpcurl is the reference gRPC client of the interop tests; the protoc
# plugins let a test check that the generated code is current.
gobin="$(go env GOPATH)/bin"
GOBIN="$gobin" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
GOBIN="$gobin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$gobin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
export PATH="$gobin:$PATH"

# @grpc/grpc-js drives ModelStreamInfer in an interop test.
npm ci --silent --no-audit --no-fund --prefix cmd/modelserver/testdata/node
npm ci --silent --no-audit --no-fund --prefix llm/tokenizer/testdata/node
npm ci --silent --no-audit --no-fund --prefix llm/chattemplate/testdata/node
npm ci --silent --no-audit --no-fund --prefix openai/testdata/node

# Tests that need ONNX Runtime, the reference clients or protoc skip without
# them on a developer's machine; here they must run.
export MODELSERVER_REQUIRE_ORT=1 MODELSERVER_REQUIRE_INTEROP=1 MODELSERVER_REQUIRE_PROTOC=1

go mod download
go vet ./...
go build ./...
go test -race -count=1 ./...

# The GPU code is built only with the cuda tag; compile, vet and
# test-compile it against Debian's CUDA headers so it cannot rot unnoticed.
scripts/check-cuda-build.sh
