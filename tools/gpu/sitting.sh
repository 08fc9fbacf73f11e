#!/usr/bin/env bash
# The GPU machine's side of a sitting packed by tools/gpu/prepare.sh (docs/BENCHMARKS.md, 'GPU').
#   tools/gpu/sitting.sh unpack   moves whichever of .gpu/c1 and .gpu/c2 travelled into /tmp/stash
#   tools/gpu/sitting.sh          with .gpu/c3: gpu-check (Inference:Device Cuda and Auto, device-parity), then the
#                                 defense's cost on CUDA: the embedded model over 300 test images (groups of 3, one
#                                 window at a time, no check) and, when its graph travelled, ViT-B/16 (random weights)
# STRAPVIT_CUDA_LIBS: folders holding CUDA 13's and cuDNN 9's libraries (default: those of the machine's PyTorch).
set -uo pipefail
cd "$(dirname "$0")/../.."
S=/tmp/stash
mkdir -p "$S"
if [ "${1:-}" = unpack ]; then
  [ -f .gpu/c1/cuda.so.xz ] && xz -dc .gpu/c1/cuda.so.xz > "$S/libonnxruntime_providers_cuda.so"
  if [ -f .gpu/c2/runtime.tar.xz ]; then
    mkdir -p "$S/dotnet" && tar -C "$S/dotnet" -xJf .gpu/c2/runtime.tar.xz \
      && xz -dc .gpu/c2/libonnxruntime.so.xz > "$S/libonnxruntime.so" && cp .gpu/c2/libonnxruntime_providers_shared.so "$S/"
  fi
  ls -la "$S"
  exit 0
fi

C=.gpu/c3
export DOTNET_ROOT="$S/dotnet" PATH="$S/dotnet:$PATH" DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
if [ -z "${STRAPVIT_CUDA_LIBS:-}" ]; then
  nv="$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2> /dev/null || true)"
  STRAPVIT_CUDA_LIBS="$nv/cu13/lib:$nv/cudnn/lib"
fi
export LD_LIBRARY_PATH="$STRAPVIT_CUDA_LIBS"
t0=$(date +%s)
step() { echo "[t+$(($(date +%s) - t0))s] $*"; }
mkdir -p "$S/b" && tar -C "$S/b" -xJf "$C/builds.tar.xz" || exit 3
for d in api bench cli; do cp "$S"/libonnxruntime*.so "$S/b/$d/"; done
nvidia-smi -L

step "gpu-check"
STRAPVIT_API_BIN="$S/b/api" STRAPVIT_BENCH_BIN="$S/b/bench" timeout 300 tools/gpu-check.sh --require-gpu --skip-build --skip-tests --skip-bench
step "gpu-check exit $?"

bench() { timeout 120 dotnet "$S/b/bench/StrapVit.Benchmarks.dll" "$@" 2>&1 | grep -v onnxruntime; }
export STRAPVIT_BENCH_DEVICE=Cuda
T=samples/fashion-mnist/test-1000-images-idx3-ubyte.gz
for g in 3 1; do step "embedded model, groups of $g, 300 images"; STRAPVIT_DEFENSE_GROUP=$g bench defense-cost models/fashion-vit-tiny 300 "$T" | tail -1; done
step "embedded model, no check"; bench defense-cost models/fashion-vit-tiny 300 "$T" 0 | tail -1

if [ -f "$C/vitb16-graph.onnx" ]; then
  step "ViT-B/16: weights and calibration"
  mkdir -p "$S/vitb16" && python3 tools/gpu/timing_package.py fill "$C/vitb16-graph.onnx" "$S/vitb16/model.onnx" \
    && cp "$C/vitb16-model.json" "$S/vitb16/model.json" \
    && timeout 120 dotnet "$S/b/cli/strapvit.dll" calibrate "$S/vitb16" --images "$C/calib-images" | tail -1
  I=samples/trouser-rgb-112.jpg
  for round in 1 2; do
    for g in 3 1; do step "ViT-B/16, groups of $g (round $round)"; STRAPVIT_DEFENSE_GROUP=$g bench defense-cost "$S/vitb16" 50 "$I" | tail -1; done
    step "ViT-B/16, no check (round $round)"; bench defense-cost "$S/vitb16" 50 "$I" 0 | tail -1
  done
  step "ViT-B/16, where the time goes"; STRAPVIT_DEFENSE_PARTS=1 bench defense-cost "$S/vitb16" 50 "$I" | tail -6
fi
step done
