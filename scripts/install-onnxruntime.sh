#!/usr/bin/env bash
# Installs the pinned ONNX Runtime CPU library where modelserver looks for it
# by default: /usr/local/lib/libonnxruntime.so when that directory is
# writable, else ~/.local/lib/libonnxruntime.so. ORT_INSTALL_DIR overrides.
#
# The library comes out of the onnxruntime-node package of the npm registry
# (the only registry here that ships the linux-x64 build) and is checked
# against a pinned sha256 before it is installed.
set -euo pipefail

ORT_VERSION=1.24.3
ORT_SHA256=92ba8e44d31b80a34f5e805076a044122c3be1fffe0d88ed790de7267b0b2682
LIB_IN_PACKAGE=package/bin/napi-v6/linux/x64/libonnxruntime.so.1

if [[ -n "${ORT_INSTALL_DIR:-}" ]]; then
  dir=$ORT_INSTALL_DIR
elif [[ -w /usr/local/lib ]]; then
  dir=/usr/local/lib
else
  dir=$HOME/.local/lib
fi
target=$dir/libonnxruntime.so.$ORT_VERSION

if [[ -f $target ]] && echo "$ORT_SHA256  $target" | sha256sum --check --status; then
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$dir/libonnxruntime.so"
  echo "onnxruntime $ORT_VERSION already installed at $target"
  exit 0
fi

for tool in npm tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "install-onnxruntime: $tool is required (apt-get install nodejs npm)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
tar -xzf "$work/onnxruntime-node-$ORT_VERSION.tgz" -C "$work" "$LIB_IN_PACKAGE"
if ! echo "$ORT_SHA256  $work/$LIB_IN_PACKAGE" | sha256sum --check --status; then
  echo "install-onnxruntime: sha256 mismatch for libonnxruntime.so $ORT_VERSION; refusing to install" >&2
  exit 1
fi
mkdir -p "$dir"
install -m 0644 "$work/$LIB_IN_PACKAGE" "$target"
ln -sf "libonnxruntime.so.$ORT_VERSION" "$dir/libonnxruntime.so"
echo "installed onnxruntime $ORT_VERSION at $target"
