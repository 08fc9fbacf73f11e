#!/usr/bin/env bash
# The GPU machine's side of a sitting packed by tools/gpu/prepare.sh (docs/BENCHMARKS.md, 'GPU').
#   tools/gpu/sitting.sh unpack   moves whichever of .gpu/c1 and .gpu/c2 travelled into /tmp/stash
#   tools/gpu/sitting.sh          with .gpu/c3: gpu-check (Inference:Device Cuda and Auto, device-parity), then the
#                                 defense's cost on CUDA: the embedded model over 300 test images (groups of 3, one
#                                 window at a time, groups of 3 without the calibrated margin, no check) and, when its graph travelled, ViT-B/16 (random weights)
# STRAPVIT_CUDA_LIBS: folders holding CUDA 13's and cuDNN 9's libraries (default: those of the machine's PyTorch).
# Exit status: 0 everything ran and gpu-check passed; 1 a step failed (each says FAIL); 2 nothing to unpack or run.
set -uo pipefail
cd "$(dirname "$0")/../.."
S=/tmp/stash
mkdir -p "$S"
failures=0
fail() { echo "sitting: FAIL  $*"; failures=$((failures + 1)); }

if [ "${1:-}" = unpack ]; then
  found=0
  if [ -f .gpu/c1/cuda.so.xz ]; then
    found=1
    xz -dc .gpu/c1/cuda.so.xz > "$S/libonnxruntime_providers_cuda.so" || fail "unpacking the CUDA provider"
  fi
  if [ -f .gpu/c2/runtime.tar.xz ]; then
    found=1
    { mkdir -p "$S/dotnet" && tar -C "$S/dotnet" -xJf .gpu/c2/runtime.tar.xz; } || fail "unpacking the .NET runtime"
    xz -dc .gpu/c2/libonnxruntime.so.xz > "$S/libonnxruntime.so" || fail "unpacking libonnxruntime.so"
    cp .gpu/c2/libonnxruntime_providers_shared.so "$S/" || fail "copying libonnxruntime_providers_shared.so"
  fi
  ls -la "$S"
  [ "$found" -eq 1 ] || { echo "sitting: neither .gpu/c1 nor .gpu/c2 travelled (name one in the call's carry)"; exit 2; }
  exit $((failures > 0 ? 1 : 0))
fi

C=.gpu/c3
[ -f "$C/builds.tar.xz" ] || { echo "sitting: .gpu/c3 did not travel (name it in the call's carry)"; exit 2; }
for f in dotnet/dotnet libonnxruntime.so libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so; do
  [ -e "$S/$f" ] || { echo "sitting: $S/$f is missing: run 'tools/gpu/sitting.sh unpack' with .gpu/c1, then .gpu/c2, first"; exit 2; }
done
export DOTNET_ROOT="$S/dotnet" PATH="$S/dotnet:$PATH" DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
if [ -z "${STRAPVIT_CUDA_LIBS:-}" ]; then
  nv="$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2> /dev/null)" \
    || { echo "sitting: no Python package 'nvidia' to find CUDA's libraries in: set STRAPVIT_CUDA_LIBS"; exit 2; }
  STRAPVIT_CUDA_LIBS="$nv/cu13/lib:$nv/cudnn/lib"
fi
export LD_LIBRARY_PATH="$STRAPVIT_CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
t0=$(date +%s)
step() { echo "[t+$(($(date +%s) - t0))s] $*"; }
{ mkdir -p "$S/b" && tar -C "$S/b" -xJf "$C/builds.tar.xz"; } || { echo "sitting: unpacking the builds failed"; exit 1; }
for d in api bench cli; do cp "$S"/libonnxruntime*.so "$S/b/$d/" || exit 1; done
nvidia-smi -L

step "gpu-check"
STRAPVIT_API_BIN="$S/b/api" STRAPVIT_BENCH_BIN="$S/b/bench" timeout 300 tools/gpu-check.sh --require-gpu --skip-build --skip-tests --skip-bench \
  || fail "gpu-check (exit $?)"

# One benchmark: its last LINES lines (ONNX Runtime's own warnings left out), or its output's end and FAIL.
bench() { # bench LINES ARGS...
  local lines=$1 out
  shift
  out="$(timeout 120 dotnet "$S/b/bench/StrapVit.Benchmarks.dll" "$@" 2>&1)"
  local rc=$?
  grep -v '\[W:onnxruntime' <<< "$out" | tail -"$lines"
  [ "$rc" -eq 0 ] || { tail -5 <<< "$out"; fail "benchmark $* (exit $rc)"; }
}
export STRAPVIT_BENCH_DEVICE=Cuda
T=samples/fashion-mnist/test-1000-images-idx3-ubyte.gz
for g in 3 1; do step "embedded model, groups of $g, 300 images"; STRAPVIT_DEFENSE_GROUP=$g bench 1 defense-cost models/fashion-vit-tiny 300 "$T"; done
step "embedded model, groups of 3, no second-round margin"; STRAPVIT_DEFENSE_MARGIN=0 bench 1 defense-cost models/fashion-vit-tiny 300 "$T"
step "embedded model, no check"; bench 1 defense-cost models/fashion-vit-tiny 300 "$T" 0

if [ -f "$C/vitb16-graph.onnx" ]; then
  step "ViT-B/16: weights and calibration"
  if mkdir -p "$S/vitb16" && python3 tools/gpu/timing_package.py fill "$C/vitb16-graph.onnx" "$S/vitb16/model.onnx" \
    && cp "$C/vitb16-model.json" "$S/vitb16/model.json" \
    && timeout 120 dotnet "$S/b/cli/strapvit.dll" calibrate "$S/vitb16" --images "$C/calib-images"; then
    I=samples/trouser-rgb-112.jpg
    for round in 1 2; do
      for g in 3 1; do step "ViT-B/16, groups of $g (round $round)"; STRAPVIT_DEFENSE_GROUP=$g bench 1 defense-cost "$S/vitb16" 50 "$I"; done
      step "ViT-B/16, no check (round $round)"; bench 1 defense-cost "$S/vitb16" 50 "$I" 0
    done
    step "ViT-B/16, where the time goes"; STRAPVIT_DEFENSE_PARTS=1 bench 6 defense-cost "$S/vitb16" 50 "$I"
  else
    fail "ViT-B/16's weights or calibration"
  fi
fi
step "done: $failures failed"
exit $((failures > 0 ? 1 : 0))
