#!/usr/bin/env bash
# The GPU machine's side of a sitting packed by tools/gpu/prepare.sh (docs/BENCHMARKS.md, 'GPU').
#   tools/gpu/sitting.sh   stores whichever kit pieces (.gpu/pN) travelled in /tmp/stash; once all have arrived, unpacks
#                          the kit and runs gpu-check (Inference:Device Cuda and Auto, device-parity), device-parity with
#                          key-masked views, then the defense's cost on CUDA: the embedded model over 300 test images
#                          (groups of 3, the default, and one window at a time, each with key-masked and with dropped
#                          views; no check), certified mode per image (both view kinds), and, when their graphs
#                          travelled, ViT-B/16 (random weights) in torchvision's layout and in timm's (key-masked and
#                          dropped views). STRAPVIT_SITTING_LOG names a file that gets a copy of the output.
# STRAPVIT_CUDA_LIBS: folders holding CUDA 13's and cuDNN 9's libraries (default: those of the machine's PyTorch).
# Exit status: 0 everything ran and gpu-check passed; 1 a step failed (each says FAIL); 2 nothing travelled or the
# kit is broken; 3 pieces stored, more to come (the message says which).
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${STRAPVIT_SITTING_LOG:-}" ] && [ -z "${STRAPVIT_SITTING_TEED:-}" ]; then
  # The whole output into the log as well, every line of it before this script returns.
  STRAPVIT_SITTING_TEED=1 "$0" "$@" 2>&1 | tee -a "$STRAPVIT_SITTING_LOG"
  exit "${PIPESTATUS[0]}"
fi
S=/tmp/stash
failures=0
fail() { echo "sitting: FAIL  $*"; failures=$((failures + 1)); }

# Each piece's folder names its kit ("kit": the piece count and the whole tar's sha256). Pieces are kept per kit, and a
# kit is unpacked only when all its pieces have come and their concatenation has that hash.
shopt -s nullglob
travelled=(.gpu/p*/kit.tar.*)
if [ ${#travelled[@]} -gt 0 ]; then
  read -r want hash < "${travelled[0]%/*}/kit" || { echo "sitting: ${travelled[0]%/*}/kit is missing: pack with tools/gpu/prepare.sh"; exit 2; }
  if [ "$(cat "$S/ready" 2> /dev/null)" != "$hash" ]; then
    rm -rf "$S/kit" "$S/ready"
    mkdir -p "$S/pieces/$hash" && cp "${travelled[@]}" "$S/pieces/$hash/" || { echo "sitting: storing the pieces failed"; exit 2; }
    stored=("$S/pieces/$hash"/kit.tar.*)
    if [ "${#stored[@]}" -lt "$want" ]; then
      echo "sitting: stored ${#stored[@]} of $want kit pieces ($(cd "$S/pieces/$hash" && echo kit.tar.*)); carry the next .gpu/pN"
      exit 3
    fi
    [ "$(cat "${stored[@]}" | sha256sum | cut -d' ' -f1)" = "$hash" ] || { echo "sitting: the pieces do not make the kit they name (sha256)"; exit 2; }
    mkdir -p "$S/kit" && cat "${stored[@]}" | tar -C "$S/kit" -xf - || { echo "sitting: the kit does not unpack"; exit 2; }
    rm -rf "$S/pieces"
    xz -dc "$S/kit/c1/cuda.so.xz" > "$S/libonnxruntime_providers_cuda.so" || fail "unpacking the CUDA provider"
    { rm -rf "$S/dotnet" && mkdir -p "$S/dotnet" && tar -C "$S/dotnet" -xJf "$S/kit/c2/runtime.tar.xz"; } || fail "unpacking the .NET runtime"
    xz -dc "$S/kit/c2/libonnxruntime.so.xz" > "$S/libonnxruntime.so" || fail "unpacking libonnxruntime.so"
    cp "$S/kit/c2/libonnxruntime_providers_shared.so" "$S/" || fail "copying libonnxruntime_providers_shared.so"
    [ "$failures" -eq 0 ] || exit 2
    echo "$hash" > "$S/ready"
  fi
fi
[ -f "$S/ready" ] || { echo "sitting: no kit piece travelled (name a .gpu/pN folder in the call's carry)"; exit 2; }

C="$S/kit/c3"
for f in dotnet/dotnet libonnxruntime.so libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so; do
  [ -e "$S/$f" ] || { echo "sitting: $S/$f is missing"; exit 2; }
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
{ rm -rf "$S/b" && mkdir -p "$S/b" && tar -C "$S/b" -xJf "$C/builds.tar.xz"; } || { echo "sitting: unpacking the builds failed"; exit 1; }
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
step "device parity with key-masked views (CPU and CUDA both KeyMask; CPU KeyMask = CPU Drop is a CI test)"
STRAPVIT_VIEW_MASKING=KeyMask bench 6 device-parity models/fashion-vit-tiny "$T" 200
# Masked views with a key mask (all of an image's views in one run) against dropped tokens (a run per length).
for masking in KeyMask Drop; do
  for g in 3 1; do
    step "embedded model, groups of $g, views $masking, 300 images"
    STRAPVIT_VIEW_MASKING=$masking STRAPVIT_DEFENSE_GROUP=$g bench 1 defense-cost models/fashion-vit-tiny 300 "$T"
  done
done
step "embedded model, no check"; bench 1 defense-cost models/fashion-vit-tiny 300 "$T" 0
for masking in KeyMask Drop; do
  for side in 4 6; do
    step "embedded model, certified mode, ${side}x$side masks, views $masking, 100 images"
    STRAPVIT_VIEW_MASKING=$masking STRAPVIT_BENCH_MODELS=fashion-vit-tiny bench 1 certify 100 "$side" 1
  done
done

# A ViT-B/16 package that travelled as a graph: weights drawn there, calibrated on copies of the samples.
vit_package() { # vit_package NAME: the package folder $S/NAME, or FAIL
  mkdir -p "$S/$1" && python3 tools/gpu/timing_package.py fill "$C/$1-graph.onnx" "$S/$1/model.onnx" \
    && cp "$C/$1-model.json" "$S/$1/model.json" \
    && timeout 120 dotnet "$S/b/cli/strapvit.dll" calibrate "$S/$1" --images "$C/calib-images"
}
I=samples/trouser-rgb-112.jpg
if [ -f "$C/vitb16-graph.onnx" ]; then
  step "ViT-B/16: weights and calibration"
  if vit_package vitb16; then
    for round in 1 2; do
      for g in 3 1; do step "ViT-B/16, groups of $g (round $round)"; STRAPVIT_DEFENSE_GROUP=$g bench 1 defense-cost "$S/vitb16" 50 "$I"; done
      step "ViT-B/16, no check (round $round)"; bench 1 defense-cost "$S/vitb16" 50 "$I" 0
    done
    step "ViT-B/16, where the time goes"; STRAPVIT_DEFENSE_PARTS=1 bench 6 defense-cost "$S/vitb16" 50 "$I"
  else
    fail "ViT-B/16's weights or calibration"
  fi
fi
if [ -f "$C/vitb16timm-graph.onnx" ]; then
  step "ViT-B/16 in timm's layout: weights and calibration"
  if vit_package vitb16timm; then
    for round in 1 2; do
      for masking in KeyMask Drop; do
        step "ViT-B/16 (timm), groups of 3, views $masking (round $round)"
        STRAPVIT_VIEW_MASKING=$masking bench 1 defense-cost "$S/vitb16timm" 50 "$I"
      done
      step "ViT-B/16 (timm), no check (round $round)"; bench 1 defense-cost "$S/vitb16timm" 50 "$I" 0
    done
  else
    fail "ViT-B/16 (timm)'s weights or calibration"
  fi
fi
step "done: $failures failed"
exit $((failures > 0 ? 1 : 0))
