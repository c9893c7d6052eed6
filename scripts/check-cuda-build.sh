#!/usr/bin/env bash
# Compiles and vets the cuda build tag, so GPU code cannot rot on machines
# without a GPU. On a fresh Debian 12 machine it first installs CUDA 11.8
# (headers, the driver library, nvcc) from Debian's non-free component; later
# runs skip that. Then it
#   - checks that cuda/kernels/kernels.ptx is what nvcc makes of kernels.cu,
#   - runs go vet -tags cuda ./... and go build -tags cuda ./...,
#   - builds modelserver and the cuda test binaries with -tags cuda,
#   - runs those test binaries: without a GPU they must report ErrNoCUDA and
#     skip (not die in gorgonia.org/cu's init), with one they test it,
#   - starts the tagged modelserver binary (--help) to show it loads here.
#
# Usage: scripts/check-cuda-build.sh [--out DIR] [--check-ptx | --update-ptx]
#   --out DIR     keep the binaries in DIR (default: a temporary directory)
#   --check-ptx   only check the PTX (used by Dockerfile.cuda)
#   --update-ptx  regenerate cuda/kernels/kernels.ptx after editing kernels.cu
set -euo pipefail
cd "$(dirname "$0")/.."

out="" mode=all
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --check-ptx) mode=check-ptx; shift ;;
    --update-ptx) mode=update-ptx; shift ;;
    *) echo "usage: $0 [--out DIR] [--check-ptx | --update-ptx]" >&2; exit 2 ;;
  esac
done

start=$SECONDS
step() { printf '== %s (%ds)\n' "$*" $((SECONDS - start)); }

# The PTX is compiled with Debian's nvcc 11.8, whatever else is on the PATH,
# so the committed file is reproducible.
NVCC=${NVCC:-/usr/bin/nvcc}
PTX_FLAGS=(--ptx -arch=compute_70 --fmad=false)
KERNEL_SRC=cuda/kernels/kernels.cu
KERNEL_PTX=cuda/kernels/kernels.ptx

install_cuda() {
  if [[ -f /usr/include/cuda.h && -x $NVCC ]] && ldconfig -p | grep -q 'libcuda\.so '; then
    return
  fi
  step "installing CUDA 11.8 from Debian non-free"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    # Idempotent: only lines that still read exactly "Components: main".
    $sudo sed -i 's/^Components: main$/Components: main contrib non-free/' /etc/apt/sources.list.d/debian.sources
  elif [[ -f /etc/apt/sources.list ]]; then
    $sudo sed -i -E '/^deb .* main$/ s/ main$/ main contrib non-free/' /etc/apt/sources.list
  fi
  $sudo apt-get update -qq
  # A second try resumes an install interrupted by a flaky mirror.
  for attempt in 1 2; do
    if DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        nvidia-cuda-dev nvidia-cuda-toolkit >/dev/null; then
      break
    fi
    ((attempt == 2)) && { echo "check-cuda-build: installing nvidia-cuda-dev and nvidia-cuda-toolkit failed" >&2; exit 1; }
    echo "check-cuda-build: apt-get install failed; retrying" >&2
  done
}

# gen_ptx FILE writes the PTX of kernels.cu, with a header naming its source.
gen_ptx() {
  local raw
  raw=$(mktemp)
  "$NVCC" "${PTX_FLAGS[@]}" -o "$raw" "$KERNEL_SRC"
  {
    echo "// Code generated from kernels.cu by scripts/check-cuda-build.sh; DO NOT EDIT."
    echo "// source-sha256: $(sha256sum "$KERNEL_SRC" | cut -d' ' -f1)"
    echo "// nvcc flags: ${PTX_FLAGS[*]}"
    cat "$raw"
  } >"$1"
  rm -f "$raw"
}

check_ptx() {
  if ! "$NVCC" --version | grep -q 'release 11\.8'; then
    echo "check-cuda-build: $NVCC is not nvcc 11.8, which made $KERNEL_PTX; set NVCC" >&2
    exit 1
  fi
  local fresh
  fresh=$(mktemp)
  gen_ptx "$fresh"
  if [[ $mode == update-ptx ]]; then
    if cmp -s "$fresh" "$KERNEL_PTX"; then
      echo "$KERNEL_PTX is up to date"
    else
      cp "$fresh" "$KERNEL_PTX"
      echo "regenerated $KERNEL_PTX; commit it"
    fi
  elif ! cmp -s "$fresh" "$KERNEL_PTX"; then
    diff -u "$KERNEL_PTX" "$fresh" | head -40 >&2 || true
    echo "check-cuda-build: $KERNEL_PTX is not what nvcc makes of $KERNEL_SRC; run scripts/check-cuda-build.sh --update-ptx and commit it" >&2
    rm -f "$fresh"
    exit 1
  fi
  rm -f "$fresh"
}

install_cuda
step "checking $KERNEL_PTX"
check_ptx
[[ $mode == all ]] || exit 0

if [[ -z $out ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

export CGO_ENABLED=1
step "go vet -tags cuda ./..."
go vet -tags cuda ./...
step "go build -tags cuda ./..."
go build -tags cuda ./...
go build -tags cuda -o "$out/modelserver-cuda" ./cmd/modelserver
step "go test -c -tags cuda ./cuda/..."
go test -c -tags cuda -o "$out/" ./cuda/...

# The tagged binaries need libcuda.so.1 to start (nvidia-cuda-dev brings
# the driver's user-space library along); without a GPU they must run and
# report ErrNoCUDA rather than exit in gorgonia.org/cu's init.
step "running the cuda test binaries"
for bin in "$out"/*.test; do
  (cd "cuda/$(basename "$bin" .test | sed 's/^cuda$/./')" && "$bin" -test.count=1 -test.short) || {
    echo "check-cuda-build: $(basename "$bin") failed" >&2
    exit 1
  }
done
"$out/modelserver-cuda" --help >/dev/null 2>&1 || {
  echo "check-cuda-build: the cuda-tagged modelserver does not start on this machine" >&2
  "$out/modelserver-cuda" --help >&2 || true
  exit 1
}
step "done; binaries in $out"
