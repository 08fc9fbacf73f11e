#!/usr/bin/env bash
# Packs a GPU sitting (docs/BENCHMARKS.md, 'GPU') for a GPU machine that has CUDA 13 and cuDNN 9 (e.g. in a PyTorch
# install) but no .NET. Three parts, in the kit's folders c1-c3:
#   c1  ONNX Runtime's CUDA provider with the code for other GPU architectures zeroed (xz, about 50 MB; STRAPVIT_GPU_SM, default 90)
#   c2  the .NET runtime (dotnet, host, NETCore.App and AspNetCore.App) and ONNX Runtime's own libraries
#   c3  Release builds of src/StrapVit.Api, tools/StrapVit.Benchmarks and src/StrapVit.Cli without the native libraries;
#       with STRAPVIT_VIT_B16=<folder of tools/gradients/export_vit_b16.py> also ViT-B/16's graph without its large
#       weights (tools/gpu/timing_package.py), refilled and calibrated there; with STRAPVIT_VIT_B16_TIMM=<folder of
#       export_vit_b16.py --model vit-b16-timm> the same for ViT-B/16 in timm's layout (fused attention, key masks)
# The kit travels as pieces .gpu/p1..pN: one tar cut so that a piece and the repository fit one call's 64 MiB with
# 4 MiB to spare (STRAPVIT_GPU_PART_MB sets another size); each piece's folder names the count and the tar's sha256.
# On the GPU machine, in the repository root, one piece carried per call while the machine stays warm, the same
# command each time:
#   tools/gpu/sitting.sh           (stores the piece in /tmp/stash; with the last one, unpacks and runs the sitting)
# STRAPVIT_PYTHON: a Python with the onnx package for the ViT-B/16 step (default Debian's, python3-onnx).
set -euo pipefail
shopt -s nullglob
vit_b16="${STRAPVIT_VIT_B16:+$(cd "$STRAPVIT_VIT_B16" && pwd)}"
vit_b16_timm="${STRAPVIT_VIT_B16_TIMM:+$(cd "$STRAPVIT_VIT_B16_TIMM" && pwd)}"
python="${STRAPVIT_PYTHON:-/usr/bin/python3}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
sm="${STRAPVIT_GPU_SM:-90}"
work="$(mktemp -d -t strapvit-gpu-prepare.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/kit/c1" "$work/kit/c2" "$work/kit/c3"
kit="$work/kit"
for build in api:src/StrapVit.Api bench:tools/StrapVit.Benchmarks cli:src/StrapVit.Cli; do
  dotnet build -c Release "${build#*:}" -o "$work/${build%%:*}" > "$work/build.log" 2>&1 || { tail -20 "$work/build.log"; exit 1; }
done
native="$work/api"
python3 tools/gpu/zero_fatbin.py "$native/libonnxruntime_providers_cuda.so" "$work/cuda.so" "$sm"
xz -9 -T2 -c "$work/cuda.so" > "$kit/c1/cuda.so.xz"
dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
# The newest .NET 10 runtime, which the builds target (global.json pins the SDK).
version="$(dotnet --list-runtimes | awk '$1 == "Microsoft.NETCore.App" && $2 ~ /^10\./ {v = $2} END {print v}')"
[ -n "$version" ] || { echo "prepare: no .NET 10 runtime installed"; exit 1; }
tar -C "$dotnet_root" -cf - dotnet host "shared/Microsoft.NETCore.App/$version" "shared/Microsoft.AspNetCore.App/$version" \
  | xz -9 -T2 > "$kit/c2/runtime.tar.xz"
xz -9 -T2 -c "$native/libonnxruntime.so" > "$kit/c2/libonnxruntime.so.xz"
cp "$native/libonnxruntime_providers_shared.so" "$kit/c2/"
tar -C "$work" --exclude='libonnxruntime*.so' --exclude='*.pdb' -cf - api bench cli | xz -9 -T2 > "$kit/c3/builds.tar.xz"
# ViT-B/16 in torchvision's layout (vitb16) and in timm's (vitb16timm, whose attention the service fuses and can
# key-mask): each graph without its large weights, and its manifest with the tokens entry the token defense needs
# (README, 'Bring your own ViT'; older exports lack it, and torchvision's tokens are /encoder/Add_output_0).
for entry in "vitb16:$vit_b16" "vitb16timm:$vit_b16_timm"; do
  name="${entry%%:*}" dir="${entry#*:}"
  [ -n "$dir" ] || continue
  "$python" tools/gpu/timing_package.py strip "$dir/model.onnx" "$kit/c3/$name-graph.onnx"
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); m.setdefault("tokens",{"tensor":"/encoder/Add_output_0","classToken":True}); json.dump(m,open(sys.argv[2],"w"))' \
    "$dir/model.json" "$kit/c3/$name-model.json"
done
if [ -n "$vit_b16$vit_b16_timm" ]; then
  # Calibration needs 10 images at least: the samples, three copies of each (timing only, as in session 11).
  mkdir -p "$kit/c3/calib-images"
  for f in samples/*.png samples/*.jpg; do for i in 0 1 2; do cp "$f" "$kit/c3/calib-images/$i-$(basename "$f")"; done; done
fi
du -sh "$kit"/c1 "$kit"/c2 "$kit"/c3
# One tar (its parts are compressed already), cut into pieces. A piece travels with the repository (tracked and
# untracked files git does not ignore): together at most 64 MiB, less 4 MiB to spare.
tar -C "$kit" -cf "$work/kit.tar" c1 c2 c3
repo_bytes="$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2> /dev/null | awk '{s += $1} END {print s + 0}')"
part_bytes=$(( ${STRAPVIT_GPU_PART_MB:-0} > 0 ? STRAPVIT_GPU_PART_MB * 1000000 : (60 << 20) - repo_bytes ))
[ "$part_bytes" -ge $((8 << 20)) ] || { echo "prepare: the repository takes $repo_bytes bytes, too little room left for a piece"; exit 1; }
split -b "$part_bytes" -d -a 2 "$work/kit.tar" "$work/piece."
hash="$(sha256sum "$work/kit.tar" | cut -d' ' -f1)"
pieces=("$work"/piece.*)
n=${#pieces[@]}
rm -rf .gpu
for i in "${!pieces[@]}"; do
  mkdir -p ".gpu/p$((i + 1))"
  mv "${pieces[$i]}" ".gpu/p$((i + 1))/kit.tar.$(printf %02d "$i")"
  echo "$n $hash" > ".gpu/p$((i + 1))/kit"
done
du -sh .gpu/p*
echo "each call carries one piece folder (.gpu/p1 .. .gpu/p$n); the repository itself travels too (64 MiB in all)"
