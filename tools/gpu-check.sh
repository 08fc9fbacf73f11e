#!/usr/bin/env bash
# GPU check for StrapVitService (docs/BENCHMARKS.md, 'GPU').
#
# On a machine with an NVIDIA GPU and CUDA 13 + cuDNN 9 libraries (what the ONNX Runtime GPU package links):
#   1. builds the solution (Release) and runs the test suite (its sessions run on the CPU: the tests pin Inference:Device=Cpu);
#   2. starts the service with Inference:Device=Cuda (CUDA or refuse to start), exercises classification (plain,
#      defended, certified) and an FGSM attack, and proves every ONNX Runtime session it created runs on the CUDA
#      execution provider: each "session ... created on" log line names CUDAExecutionProvider, no fallback warning
#      was logged, and /v1/model and strapvit_model_info report CUDA;
#   3. checks that CUDA gives the CPU's answers (device-parity: logits, gradient, defended logits on 200 images);
#   4. runs the benchmark ratios on CUDA (gradient vs forward, certified mode per image, the defense's cost).
# Without a GPU (or with --fallback-only) it checks the fallback path instead, on the CPU:
#   Inference:Device=Auto falls back to CPU with one warning per session and keeps serving;
#   Inference:Device=Cuda refuses to start: exit code 1 and a one-line reason naming CUDA.
#
# Usage: tools/gpu-check.sh [--require-gpu] [--fallback-only] [--skip-build] [--skip-tests] [--skip-bench]
#   --require-gpu    no GPU is a failure (exit 2) instead of a fallback check
#   --skip-build     use the existing Release build of src/StrapVit.Api (or STRAPVIT_API_BIN, a folder holding
#                    StrapVit.Api.dll); STRAPVIT_BENCH_BIN likewise names a build of tools/StrapVit.Benchmarks
# Exit status: 0 all checks passed; 1 a check failed; 2 --require-gpu and no usable GPU.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1

require_gpu=0 fallback_only=0 skip_build=0 skip_tests=0 skip_bench=0
for arg in "$@"; do
  case "$arg" in
    --require-gpu) require_gpu=1 ;;
    --fallback-only) fallback_only=1 ;;
    --skip-build) skip_build=1 ;;
    --skip-tests) skip_tests=1 ;;
    --skip-bench) skip_bench=1 ;;
    *) echo "gpu-check: unknown argument '$arg'" >&2; exit 1 ;;
  esac
done

failures=0
pass() { echo "gpu-check: ok    $*"; }
fail() { echo "gpu-check: FAIL  $*"; failures=$((failures + 1)); }
work="$(mktemp -d -t strapvit-gpu-check.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2> /dev/null; wait 2> /dev/null; rm -rf "$work"; }
trap cleanup EXIT

bin="${STRAPVIT_API_BIN:-$root/src/StrapVit.Api/bin/Release/net10.0/linux-x64}"
# The benchmarks: a Release build in STRAPVIT_BENCH_BIN (a folder holding StrapVit.Benchmarks.dll), else dotnet run.
bench() {
  if [ -n "${STRAPVIT_BENCH_BIN:-}" ]; then dotnet "$STRAPVIT_BENCH_BIN/StrapVit.Benchmarks.dll" "$@"
  else dotnet run -c Release --project tools/StrapVit.Benchmarks -- "$@"; fi
}
port="${STRAPVIT_GPU_CHECK_PORT:-5097}"
url="http://127.0.0.1:$port"
image="$root/samples/bag.png"

# --- which path ---------------------------------------------------------------------------------------------------
gpu=0
if [ "$fallback_only" -eq 0 ] && command -v nvidia-smi > /dev/null && nvidia-smi -L > "$work/gpus" 2>&1; then
  gpu=1
  echo "gpu-check: GPUs: $(tr '\n' ';' < "$work/gpus")"
  for lib in libcudart.so.13 libcublas.so.13 libcudnn.so.9; do
    ldconfig -p | grep -q "$lib" || echo "gpu-check: note: $lib not in the linker cache (ONNX Runtime's CUDA provider needs it; LD_LIBRARY_PATH may still provide it)"
  done
elif [ "$require_gpu" -eq 1 ]; then
  echo "gpu-check: no NVIDIA GPU visible (nvidia-smi -L failed or missing) and --require-gpu given"
  exit 2
else
  echo "gpu-check: no GPU used (nvidia-smi -L failed or missing, or --fallback-only): checking the CPU fallback path"
fi

# --- build and tests ------------------------------------------------------------------------------------------------
if [ "$skip_build" -eq 0 ]; then
  if dotnet build src/StrapVit.Api -c Release > "$work/build.log" 2>&1; then pass "dotnet build src/StrapVit.Api -c Release"
  else tail -20 "$work/build.log"; fail "dotnet build"; exit 1; fi
fi
[ -f "$bin/StrapVit.Api.dll" ] || { fail "no StrapVit.Api.dll in $bin"; exit 1; }
if [ "$gpu" -eq 1 ] && [ "$skip_tests" -eq 0 ]; then
  if dotnet test -c Release 2>&1 | tee "$work/test.log" | grep -E "^(Passed|Failed)!"; then :; fi
  if grep -q "^Failed!" "$work/test.log" || ! grep -q "^Passed!" "$work/test.log"; then fail "dotnet test -c Release on the GPU machine"
  else pass "dotnet test -c Release"; fi
fi

# Starts the service with the given Inference:Device; its log goes to $work/service-<device>.log.
start_service() { # start_service DEVICE
  ASPNETCORE_ENVIRONMENT=Production ASPNETCORE_URLS="$url" Inference__Device="$1" \
    Model__CacheDirectory="$work/cache" Serilog__MinimumLevel__Default=Information \
    dotnet "$bin/StrapVit.Api.dll" > "$work/service-$1.log" 2>&1 &
  pid=$!
}

# Waits until the gradient graphs are available (everything loaded); returns 1 if the process exits first.
wait_loaded() {
  for _ in $(seq 1 1200); do
    curl -sf "$url/v1/model" 2> /dev/null | grep -q '"gradients":{"available":true' && return 0
    kill -0 "$pid" 2> /dev/null || return 1
    sleep 0.1
  done
  return 1
}

exercise() { # classification plain, defended, certified, and one FGSM attack; all must answer 200
  local ok=0
  for q in "defense=off" "defense=mitigate" "defense=certify&patch=4"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: image/png' --data-binary "@$image" "$url/v1/classify?$q")
    [ "$code" = 200 ] || { echo "  classify?$q answered $code"; ok=1; }
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' -F "image=@$image" "$url/v1/attacks/fgsm")
  [ "$code" = 200 ] || { echo "  fgsm answered $code"; ok=1; }
  return $ok
}

stop_service() { kill "$pid" 2> /dev/null; wait "$pid" 2> /dev/null; pid=""; }

# Session lines: "ONNX Runtime session for <purpose> created on <provider>" (JSON log, one per line).
sessions_on() { grep -c "\"ExecutionProvider\":\"$2\"" <(grep 'session for' "$1") ; }

# Starts the service with Inference:Device=$1 on the GPU machine and checks that it loads everything (the gradient
# graphs included), answers, and runs every session on CUDA; leaves it running and its log in $log.
serve_on_cuda() { # serve_on_cuda DEVICE
  start_service "$1"
  if wait_loaded; then pass "service loaded with Inference:Device=$1 (gradients available)"; else tail -5 "$work/service-$1.log"; fail "service did not load with Inference:Device=$1"; fi
  if exercise; then pass "classify (off, mitigate, certify) and FGSM answered 200 with Inference:Device=$1"; else fail "requests with Inference:Device=$1"; fi
  log="$work/service-$1.log"
  total=$(grep -c 'session for' "$log"); cuda=$(sessions_on "$log" CUDAExecutionProvider)
  if [ "$total" -gt 0 ] && [ "$total" -eq "$cuda" ]; then pass "$1: all $total ONNX Runtime sessions on CUDAExecutionProvider"
  else grep 'session for' "$log" | head; fail "$1: $cuda of $total sessions on CUDA"; fi
  if grep -q 'falling back to CPU' "$log"; then fail "$1: a CUDA fallback warning was logged"; else pass "$1: no fallback warning"; fi
  # ONNX Runtime's own warnings go to stderr, outside Serilog: one per weight when a CUDA session is handed host
  # weights (the shared copy is for CPU sessions only). Its note that shape ops stay on the CPU is expected.
  ortwarn=$(grep -c 'Cannot use user supplied initializer' "$log")
  if [ "$ortwarn" -eq 0 ]; then pass "$1: no weight-copy warnings from ONNX Runtime"; else grep 'Cannot use user supplied' "$log" | head -2 | cut -c1-200; fail "$1: $ortwarn weight-copy warnings"; fi
}

if [ "$gpu" -eq 1 ]; then
  serve_on_cuda Cuda
  curl -s "$url/v1/model" | grep -q '"executionProvider":"CUDAExecutionProvider"' && pass "/v1/model reports CUDA" || fail "/v1/model does not report CUDA"
  curl -s "$url/metrics" | grep -q 'strapvit_model_info{.*execution_provider="CUDAExecutionProvider"' && pass "strapvit_model_info reports CUDA" || fail "strapvit_model_info does not report CUDA"
  stop_service
  # Auto (the default, and the GPU compose profile's) must also put everything on CUDA, the gradient graphs included.
  serve_on_cuda Auto
  stop_service
  # The same answers on CUDA as on the CPU (which the tests check against PyTorch): logits, gradient, defended logits.
  if bench device-parity models/fashion-vit-tiny samples/fashion-mnist/test-1000-images-idx3-ubyte.gz 200 2>&1 | tail -6 | tee "$work/parity.log"; \
    grep -q "device-parity: ok" "$work/parity.log"; then pass "CPU and CUDA answers agree (above)"; else fail "CPU and CUDA answers differ"; fi
  if [ "$skip_bench" -eq 0 ]; then
    # Ratios on CUDA, in one sitting (docs/BENCHMARKS.md): gradient vs forward at batch 32, certified mode per image,
    # the defense against a plain classification (read the wall-clock figures: CPU time is not the GPU's).
    STRAPVIT_BENCH_DEVICE=Cuda bench cpu-ratio 30 2>&1 | tail -15 \
      && pass "benchmark ratios on CUDA (above)" || fail "benchmark ratios on CUDA"
    STRAPVIT_BENCH_DEVICE=Cuda bench certify 100 4 1,2 2>&1 | tail -6 \
      && pass "certified mode per image on CUDA (above)" || fail "certify benchmark on CUDA"
    STRAPVIT_BENCH_DEVICE=Cuda bench defense-cost models/fashion-vit-tiny 300 samples/bag.png 2>&1 | tail -3 \
      && pass "defense cost on CUDA (above)" || fail "defense-cost benchmark on CUDA"
  fi
else
  # Auto: CUDA cannot load here, so every session falls back to CPU with a warning, and the service serves.
  start_service Auto
  if wait_loaded; then pass "service loaded with Inference:Device=Auto"; else tail -5 "$work/service-Auto.log"; fail "service did not load with Device=Auto"; fi
  if exercise; then pass "classify (off, mitigate, certify) and FGSM answered 200 on the fallback"; else fail "requests on the fallback"; fi
  log="$work/service-Auto.log"
  total=$(grep -c 'session for' "$log"); cpu=$(sessions_on "$log" CPUExecutionProvider); warned=$(grep -c 'falling back to CPU' "$log")
  if [ "$total" -gt 0 ] && [ "$total" -eq "$cpu" ] && [ "$warned" -eq "$total" ]; then
    pass "all $total sessions on CPUExecutionProvider, each after a logged fallback warning"
  else grep 'session for\|falling back' "$log" | head; fail "$cpu of $total sessions on CPU, $warned fallback warnings"; fi
  curl -s "$url/v1/model" | grep -q '"executionProvider":"CPUExecutionProvider"' && pass "/v1/model reports CPU" || fail "/v1/model does not report CPU"
  stop_service
  # Cuda: refuse to start rather than fall back.
  start_service Cuda
  for _ in $(seq 1 600); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2> /dev/null; then stop_service; fail "Inference:Device=Cuda kept running without CUDA"
  else
    wait "$pid"; code=$?; pid=""
    if [ "$code" -eq 1 ] && grep -qi 'cuda' "$work/service-Cuda.log"; then pass "Inference:Device=Cuda without CUDA exits 1: $(grep -i cuda "$work/service-Cuda.log" | tail -1 | cut -c1-160)"
    else tail -3 "$work/service-Cuda.log"; fail "Inference:Device=Cuda without CUDA exited $code"; fi
  fi
fi

if [ "$failures" -eq 0 ]; then echo "gpu-check: all passed ($([ "$gpu" -eq 1 ] && echo CUDA || echo 'CPU fallback path'))"; else echo "gpu-check: $failures failed"; fi
exit $((failures > 0 ? 1 : 0))
