#!/usr/bin/env bash
# Starts the built service on a model package and reports, from the moment it was launched, when /healthz/live and
# /healthz/ready first answered 200 and when GET /v1/model first reported gradients.available; then the process's
# resident memory (VmRSS, peak VmHWM) once loaded, after a plain and a defended classification, and after one FGSM
# attack (which runs the gradient graph). docs/BENCHMARKS.md ('Memory and time to ready').
#
# Usage (from the repository root, after `dotnet build -c Release src/StrapVit.Api`):
#   tools/http-bench/time-to-ready.sh <model-dir or ""> <cache-dir> [port]
# An empty model dir serves the embedded model. Extra settings go in the environment (e.g. Inference__ShareWeights=false).
set -u
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${STRAPVIT_API_BIN:-$root/src/StrapVit.Api/bin/Release/net10.0/linux-x64}"
model="$1"; cache="$2"; port="${3:-5080}"
url="http://127.0.0.1:$port"
image="$root/samples/bag.png"
log="$(mktemp -t strapvit-time-to-ready.XXXXXX.log)"

start=$(date +%s.%N)
ASPNETCORE_ENVIRONMENT=Production ASPNETCORE_URLS="$url" Model__Path="$model" Model__CacheDirectory="$cache" \
  Inference__Device="${Inference__Device:-Cpu}" Serilog__MinimumLevel__Default=Warning \
  dotnet "$bin/StrapVit.Api.dll" > "$log" 2>&1 &
pid=$!
since() { echo "$(date +%s.%N) - $start" | bc; }
live=""; ready=""; gradients=""
for _ in $(seq 1 6000); do
  [ -z "$live" ] && curl -sf -o /dev/null "$url/healthz/live" && live=$(since)
  [ -z "$ready" ] && curl -sf -o /dev/null "$url/healthz/ready" && ready=$(since)
  [ -n "$ready" ] && curl -sf "$url/v1/model" | grep -q '"gradients":{"available":true' && gradients=$(since) && break
  kill -0 "$pid" 2>/dev/null || { echo "the service exited; log: $log"; exit 1; }
  sleep 0.05
done
rss() { awk '/VmRSS|VmHWM/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$pid/status"; echo; }
echo "live after ${live} s, ready after ${ready} s, gradients after ${gradients} s"
sleep 2
echo -n "loaded:              "; rss
curl -s -o /dev/null -H 'Content-Type: image/png' --data-binary "@$image" "$url/v1/classify?defense=off"
curl -s -o /dev/null -H 'Content-Type: image/png' --data-binary "@$image" "$url/v1/classify?defense=mitigate"
echo -n "after classify:      "; rss
curl -s -o /dev/null -F "image=@$image" -F epsilon=0.03 "$url/v1/attacks/fgsm"
echo -n "after an FGSM attack: "; rss
kill "$pid"; wait "$pid" 2>/dev/null
rm -f "$log"
