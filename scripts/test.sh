#!/usr/bin/env bash
# Sets up a fresh Debian machine for the test suite and runs it: Debian
# packages for the interop tests, the pinned ONNX Runtime, then vet, build and
# the race-enabled tests. CI calls this script (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(curl python3 python3-numpy python3-msgpack python3-msgpack-numpy python3-requests python3-websockets)
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

# Tests that need ONNX Runtime or the Python reference client skip without
# them on a developer's machine; here they must run.
export MODELSERVER_REQUIRE_ORT=1 MODELSERVER_REQUIRE_INTEROP=1

go mod download
go vet ./...
go build ./...
go test -race -count=1 ./...
