#!/usr/bin/env bash
# Packs a GPU sitting (docs/BENCHMARKS.md, 'GPU') into three ignored folders, .gpu/c1-c3, each small enough to travel
# to a GPU machine that has CUDA 13 and cuDNN 9 (e.g. in a PyTorch install) but no .NET:
#   c1  ONNX Runtime's CUDA provider with the code for other GPU architectures zeroed (xz, about 50 MB; STRAPVIT_GPU_SM, default 90)
#   c2  the .NET runtime (dotnet, host, NETCore.App and AspNetCore.App) and ONNX Runtime's own libraries
#   c3  Release builds of src/StrapVit.Api, tools/StrapVit.Benchmarks and src/StrapVit.Cli without the native libraries;
#       with STRAPVIT_VIT_B16=<folder of tools/gradients/export_vit_b16.py> also ViT-B/16's graph without its large
#       weights (tools/gpu/timing_package.py), refilled and calibrated there
# On the GPU machine, in the repository root, one folder carried per call while the machine stays warm:
#   tools/gpu/sitting.sh unpack    (with .gpu/c1, then again with .gpu/c2: each goes to /tmp/stash)
#   tools/gpu/sitting.sh           (with .gpu/c3: gpu-check, then the defense's cost on CUDA)
# STRAPVIT_PYTHON: a Python with the onnx package for the ViT-B/16 step (default Debian's, python3-onnx).
set -euo pipefail
shopt -s nullglob
vit_b16="${STRAPVIT_VIT_B16:+$(cd "$STRAPVIT_VIT_B16" && pwd)}"
python="${STRAPVIT_PYTHON:-/usr/bin/python3}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
sm="${STRAPVIT_GPU_SM:-90}"
work="$(mktemp -d -t strapvit-gpu-prepare.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rm -rf .gpu/c1 .gpu/c2 .gpu/c3 && mkdir -p .gpu/c1 .gpu/c2 .gpu/c3
for build in api:src/StrapVit.Api bench:tools/StrapVit.Benchmarks cli:src/StrapVit.Cli; do
  dotnet build -c Release "${build#*:}" -o "$work/${build%%:*}" > "$work/build.log" 2>&1 || { tail -20 "$work/build.log"; exit 1; }
done
native="$work/api"
python3 tools/gpu/zero_fatbin.py "$native/libonnxruntime_providers_cuda.so" "$work/cuda.so" "$sm"
xz -9 -T2 -c "$work/cuda.so" > .gpu/c1/cuda.so.xz
dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
# The newest .NET 10 runtime, which the builds target (global.json pins the SDK).
version="$(dotnet --list-runtimes | awk '$1 == "Microsoft.NETCore.App" && $2 ~ /^10\./ {v = $2} END {print v}')"
[ -n "$version" ] || { echo "prepare: no .NET 10 runtime installed"; exit 1; }
tar -C "$dotnet_root" -cf - dotnet host "shared/Microsoft.NETCore.App/$version" "shared/Microsoft.AspNetCore.App/$version" \
  | xz -9 -T2 > .gpu/c2/runtime.tar.xz
xz -9 -T2 -c "$native/libonnxruntime.so" > .gpu/c2/libonnxruntime.so.xz
cp "$native/libonnxruntime_providers_shared.so" .gpu/c2/
tar -C "$work" --exclude='libonnxruntime*.so' --exclude='*.pdb' -cf - api bench cli | xz -9 -T2 > .gpu/c3/builds.tar.xz
if [ -n "$vit_b16" ]; then
  "$python" tools/gpu/timing_package.py strip "$vit_b16/model.onnx" .gpu/c3/vitb16-graph.onnx
  # The manifest with the tokens entry the token defense needs (README, 'Bring your own ViT').
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); m["tokens"]={"tensor":"/encoder/Add_output_0","classToken":True}; json.dump(m,open(sys.argv[2],"w"))' \
    "$vit_b16/model.json" .gpu/c3/vitb16-model.json
  # Calibration needs 10 images at least: the samples, three copies of each (timing only, as in session 11).
  mkdir -p .gpu/c3/calib-images
  for f in samples/*.png samples/*.jpg; do for i in 0 1 2; do cp "$f" ".gpu/c3/calib-images/$i-$(basename "$f")"; done; done
fi
du -sh .gpu/c1 .gpu/c2 .gpu/c3
echo "each call carries one folder; the repository itself travels too (64 MiB in all)"
