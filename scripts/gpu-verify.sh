#!/usr/bin/env bash
# Verifies modelserver's GPU code on a machine with an NVIDIA GPU. Go and the
# CUDA toolkit are needed only where the bundle is built; the GPU machine
# needs the NVIDIA driver (nvidia-smi, libcuda.so.1) and glibc 2.34 or newer.
#
#   scripts/gpu-verify.sh build [DIR]     here: build the bundle (default bin/gpu-verify)
#   DIR/gpu-verify.sh run [DIR]           on the GPU machine: run it
#   scripts/gpu-verify.sh ssh HOST [DIR]  build, copy to HOST:/tmp/modelserver-gpu-verify, run there
#
# The bundle holds modelserver and the cuda test binaries built with -tags
# cuda, engine.test (ONNX Runtime provider tests), a fatbin of the kernels for
# sm_80/86/89/90, this script and, when installed here, the CPU ONNX Runtime
# library. `run` checks, each reported as PASS, FAIL or SKIP with the reason:
#   1. the driver and device inventory (nvidia-smi against cuda.Probe);
#   2. the cuda package on the device: primary context on a locked thread,
#      memory accounting, pinned buffers, streams, events, async copies,
#      PTX and fatbin kernels checked against CPU references, launch errors;
#   3. copy bandwidth: device-to-device against the data sheet, pinned
#      host transfers against the PCIe link;
#   4. ONNX Runtime's CUDA provider (needs its GPU release: ORT_GPU_LIB, or
#      /opt/onnxruntime/lib/libonnxruntime.so as in the Dockerfile.cuda image,
#      plus CUDA 12 and cuDNN 9 libraries): nodes profiled per provider and
#      outputs compared with the CPU;
#   5. serving the built-in mlp-large model with --device cuda: readiness,
#      a predict compared with --device cpu, the provider in the log, GPU
#      memory gauges in /metrics;
#   6. the --device rules on a GPU host: cuda:N out of range fails, and with
#      the CPU-only runtime library `cuda` fails clearly while `auto` falls
#      back to the CPU with one log line.
# It exits non-zero if any check fails.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)

build() {
  local dir=$1 repo
  repo=$(cd "$here/.." && pwd)
  [[ -f $repo/go.mod ]] || { echo "gpu-verify: build runs in the repository (scripts/gpu-verify.sh build)" >&2; exit 2; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  cd "$repo"
  # Installs the toolchain if needed, checks the PTX, vets and builds.
  scripts/check-cuda-build.sh --out "$dir/.check"
  mv "$dir/.check/modelserver-cuda" "$dir/.check/cuda.test" "$dir/"
  rm -rf "$dir/.check"
  CGO_ENABLED=1 go test -c -o "$dir/engine.test" ./engine
  /usr/bin/nvcc -fatbin --fmad=false \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86 \
    -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=sm_90 \
    -gencode arch=compute_90,code=compute_90 \
    -o "$dir/kernels.fatbin" cuda/kernels/kernels.cu
  cp scripts/gpu-verify.sh "$dir/"
  local cpu_ort=${ONNXRUNTIME_LIB:-/usr/local/lib/libonnxruntime.so}
  if [[ -e $cpu_ort ]]; then
    cp -L "$cpu_ort" "$dir/libonnxruntime-cpu.so"
  else
    rm -f "$dir/libonnxruntime-cpu.so"
    echo "gpu-verify: no CPU ONNX Runtime at $cpu_ort (scripts/install-onnxruntime.sh); the fallback checks will be skipped" >&2
  fi
  (cd "$dir" && sha256sum modelserver-cuda cuda.test engine.test kernels.fatbin gpu-verify.sh >SHA256SUMS)
  du -sh "$dir"
  echo "bundle ready: copy $dir to the GPU machine and run: $(basename "$dir")/gpu-verify.sh run"
}

# ---------------------------------------------------------------- run ----

results=()
failed=0
record() { # record PASS|FAIL|SKIP name detail
  results+=("$(printf '%-4s %-34s %s' "$1" "$2" "$3")")
  [[ $1 == FAIL ]] && failed=1
  printf '\n>>> %s %s %s\n' "$1" "$2" "$3"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# serve NAME PORT ARGS...: starts modelserver in the background, logging to
# $work/NAME.log; sets server_pid.
serve() {
  local name=$1 port=$2
  shift 2
  "$bundle/modelserver-cuda" --host 127.0.0.1 --port "$port" --log-format text "$@" >"$work/$name.log" 2>&1 &
  server_pid=$!
}

# wait_ready PORT: waits for readiness, or for the server to exit.
wait_ready() {
  for _ in $(seq 1 240); do
    if curl -fs -o /dev/null "http://127.0.0.1:$1/v1/models/model"; then
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.5
  done
  return 1
}

stop_server() {
  if [[ -n ${server_pid:-} ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}

# numbers FILE prints the numbers of a JSON answer, one per line.
numbers() { grep -oE -- '-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?' "$1"; }

run() {
  bundle=$(cd "$1" && pwd)
  work=$(mktemp -d)
  server_pid=""
  trap 'stop_server; rm -rf "$work"' EXIT
  (cd "$bundle" && sha256sum --check --quiet SHA256SUMS) || { echo "gpu-verify: the bundle is incomplete or damaged" >&2; exit 1; }

  # 1. Driver and inventory.
  if ! command -v nvidia-smi >/dev/null; then
    record FAIL "driver" "nvidia-smi not found: no NVIDIA driver on this machine"
    print_summary
  fi
  if ! nvidia-smi -L >"$work/smi.txt" 2>&1 || ! grep -q '^GPU ' "$work/smi.txt"; then
    record FAIL "driver" "nvidia-smi lists no GPU: $(head -1 "$work/smi.txt")"
    print_summary
  fi
  nvidia-smi --query-gpu=index,name,driver_version,memory.total,pcie.link.gen.max,pcie.link.width.max --format=csv
  record PASS "driver" "$(wc -l <"$work/smi.txt") GPU(s): $(head -1 "$work/smi.txt")"

  # 2 and 3. The cuda package on the device, bandwidth included.
  if MODELSERVER_REQUIRE_GPU=1 MODELSERVER_TEST_FATBIN="$bundle/kernels.fatbin" \
      "$bundle/cuda.test" -test.v -test.count=1 -test.timeout=10m >"$work/cuda.txt" 2>&1; then
    record PASS "cuda package on the device" "inventory, worker, memory, copies, kernels (PTX + fatbin)"
  else
    record FAIL "cuda package on the device" "see the cuda.test output above"
  fi
  cat "$work/cuda.txt"
  grep -E 'device→device|host→device' "$work/cuda.txt" | sed 's/^ *//' >"$work/bw.txt" || true
  if grep -q -- '--- PASS: TestBandwidth' "$work/cuda.txt"; then
    record PASS "copy bandwidth" "$(tr '\n' ' ' <"$work/bw.txt")"
  else
    record FAIL "copy bandwidth" "$(tr '\n' ' ' <"$work/bw.txt")"
  fi

  # 4. ONNX Runtime's CUDA provider.
  local gpu_ort=${ORT_GPU_LIB:-/opt/onnxruntime/lib/libonnxruntime.so}
  if [[ ! -e $gpu_ort ]]; then
    record SKIP "ORT CUDA provider" "unverified: no ONNX Runtime GPU release at $gpu_ort (set ORT_GPU_LIB)"
  elif ONNXRUNTIME_LIB=$gpu_ort MODELSERVER_REQUIRE_ORT=1 MODELSERVER_TEST_CUDA_EP=1 \
      "$bundle/engine.test" -test.run 'TestCUDAProviderRunsOnGPU|TestAppendProvidersOrder' -test.v -test.count=1 >"$work/ep.txt" 2>&1; then
    record PASS "ORT CUDA provider" "$(grep -o 'nodes per provider: .*' "$work/ep.txt" || true)"
  else
    record FAIL "ORT CUDA provider" "$(grep -m1 -E 'FAIL|Error|error' "$work/ep.txt" || true)"
  fi
  [[ -e $work/ep.txt ]] && cat "$work/ep.txt"

  # 5. Serving with --device cuda, compared with --device cpu.
  local pg=18431 pc=18432
  if ! port_free $pg || ! port_free $pc; then
    pg=28431 pc=28432
  fi
  local body
  body='{"features": [['"$(seq -s, 1 2048 | awk -F, '{for (i = 1; i <= NF; i++) printf "%s%.4f", (i > 1 ? "," : ""), sin(i) }')"']]}'
  echo "$body" >"$work/body.json"
  if [[ ! -e $gpu_ort ]]; then
    record SKIP "serve --device cuda" "unverified: needs the ONNX Runtime GPU release"
  else
    serve gpu $pg --model mlp-large --device cuda --onnxruntime-lib "$gpu_ort"
    if ! wait_ready $pg; then
      record FAIL "serve --device cuda" "not ready: $(tail -3 "$work/gpu.log" | tr '\n' ' ')"
    else
      curl -fsS "http://127.0.0.1:$pg/v1/models/model:predict" -d @"$work/body.json" >"$work/gpu.json"
      curl -fsS "http://127.0.0.1:$pg/metrics" >"$work/metrics.txt"
      stop_server
      serve cpu $pc --model mlp-large --device cpu --onnxruntime-lib "$gpu_ort"
      if wait_ready $pc; then
        curl -fsS "http://127.0.0.1:$pc/v1/models/model:predict" -d @"$work/body.json" >"$work/cpu.json"
      fi
      stop_server
      local provider used worst
      provider=$(grep -o 'CUDAExecutionProvider[^ ]*' "$work/gpu.log" | head -1 || true)
      used=$(grep -E '^modelserver_gpu_memory_used_bytes' "$work/metrics.txt" | head -1 || true)
      # The largest relative difference between the two answers.
      worst=$(paste <(numbers "$work/gpu.json") <(numbers "$work/cpu.json" 2>/dev/null) |
        awk 'function abs(x) { return x < 0 ? -x : x }
             NF == 2 { r = abs($1 - $2) / (abs($1) > abs($2) ? abs($1) : abs($2)) ; if ($1 == $2) r = 0; if (r > m) m = r; n++ }
             NF != 2 { bad = 1 }
             END { if (bad || n == 0) print "mismatch"; else printf "%.2g", m }')
      if [[ -z $provider ]]; then
        record FAIL "serve --device cuda" "the log does not name CUDAExecutionProvider: $(grep -i -m2 'provider\|device' "$work/gpu.log" | tr '\n' ' ')"
      elif [[ $worst == mismatch ]] || awk -v w="$worst" 'BEGIN { exit !(w > 2e-2) }'; then
        record FAIL "serve --device cuda" "GPU and CPU answers differ (largest relative difference $worst)"
      elif [[ -z $used ]]; then
        record FAIL "serve --device cuda" "no modelserver_gpu_memory_used_bytes in /metrics"
      else
        record PASS "serve --device cuda" "provider $provider; answers within $worst (relative) of --device cpu; $used"
      fi
      echo "--- gpu server log"; cat "$work/gpu.log"
    fi
  fi

  # 6. The --device rules on a GPU host.
  local ort_for_rules=$gpu_ort
  [[ -e $ort_for_rules ]] || ort_for_rules=$bundle/libonnxruntime-cpu.so
  if [[ -e $ort_for_rules ]]; then
    if "$bundle/modelserver-cuda" --port $pg --model mlp-classifier --device cuda:99 --onnxruntime-lib "$ort_for_rules" >"$work/c99.log" 2>&1; then
      record FAIL "--device cuda:99" "started on a device the host does not have"
    elif grep -q 'no such CUDA device' "$work/c99.log"; then
      record PASS "--device cuda:99" "$(tail -1 "$work/c99.log")"
    else
      record FAIL "--device cuda:99" "unclear error: $(tail -1 "$work/c99.log")"
    fi
  fi
  if [[ ! -e $bundle/libonnxruntime-cpu.so ]]; then
    record SKIP "provider-missing rules" "unverified: no CPU ONNX Runtime in the bundle"
  else
    local cpu_ort=$bundle/libonnxruntime-cpu.so
    if "$bundle/modelserver-cuda" --port $pg --model mlp-classifier --device cuda --onnxruntime-lib "$cpu_ort" >"$work/explicit.log" 2>&1; then
      record FAIL "--device cuda, no provider" "started without ONNX Runtime's CUDA provider"
    elif grep -q 'execution provider unavailable' "$work/explicit.log"; then
      record PASS "--device cuda, no provider" "fails: $(tail -1 "$work/explicit.log" | cut -c1-160)"
    else
      record FAIL "--device cuda, no provider" "unclear error: $(tail -1 "$work/explicit.log" | cut -c1-200)"
    fi
    serve auto $pc --model mlp-classifier --device auto --onnxruntime-lib "$cpu_ort"
    if wait_ready $pc; then
      local lines
      lines=$(grep -ci 'falling back to the CPU' "$work/auto.log" || true)
      if [[ $lines == 1 ]]; then
        record PASS "--device auto, no provider" "serves on the CPU: $(grep -i 'falling back to the CPU' "$work/auto.log" | cut -c1-200)"
      else
        record FAIL "--device auto, no provider" "want one fallback log line, got $lines"
      fi
    else
      record FAIL "--device auto, no provider" "not ready: $(tail -2 "$work/auto.log" | tr '\n' ' ')"
    fi
    stop_server
  fi
  print_summary
}

print_summary() {
  echo
  echo "==================== gpu-verify summary"
  printf '%s\n' "${results[@]}"
  exit $failed
}

case ${1:-} in
  build) build "${2:-$here/../bin/gpu-verify}" ;;
  run) run "${2:-$here}" ;;
  ssh)
    [[ -n ${2:-} ]] || usage
    dir=${3:-$here/../bin/gpu-verify}
    build "$dir"
    ssh "$2" 'rm -rf /tmp/modelserver-gpu-verify && mkdir -p /tmp/modelserver-gpu-verify'
    scp -q "$dir"/* "$2:/tmp/modelserver-gpu-verify/"
    # shellcheck disable=SC2029 # ORT_GPU_LIB is passed from here on purpose
    ssh "$2" "ORT_GPU_LIB='${ORT_GPU_LIB:-}' /tmp/modelserver-gpu-verify/gpu-verify.sh run /tmp/modelserver-gpu-verify"
    ;;
  *) usage ;;
esac
