#!/usr/bin/env bash
# Classify an image, attack it with FGSM, and classify it again through the Open Inference Protocol (v2).
# Needs curl and jq. From the repository root:
#
#   bash docs/examples/curl/client.sh http://localhost:5080 samples/ankle-boot.png
#
# Set STRAPVIT_API_KEY when the service has API keys (the attack endpoints need one then).
set -euo pipefail

BASE=${1:-http://localhost:5080}
IMAGE=${2:-samples/ankle-boot.png}
AUTH=()
if [ -n "${STRAPVIT_API_KEY:-}" ]; then
  AUTH=(-H "X-API-Key: $STRAPVIT_API_KEY")
fi

# curl with the key; an error answer (RFC 7807 problem+json) goes to stderr and stops the script.
call() {
  local body
  if ! body=$(curl -sS --fail-with-body "${AUTH[@]}" "$@"); then
    echo "${body:-request failed}" >&2
    exit 1
  fi
  printf '%s\n' "$body"
}

# 1. Classify: a multipart upload in the field "image"; the defense runs in its default mode (mitigate).
call -F "image=@$IMAGE" "$BASE/v1/classify?topK=3" |
  jq -r '.predictions[0] | "classify: \(.label) (\(.probability * 1000 | round / 1000))"'

# 2. FGSM, untargeted, with an L-infinity budget of 8/255 in [0, 1] pixel space.
call -F "image=@$IMAGE" -F epsilon=0.03137255 "$BASE/v1/attacks/fgsm" |
  jq -r '"fgsm: \(.original.label) -> \(.adversarial.label) (success: \(.success), linf: \(.linf * 10000 | round / 10000))"'

# 3. Open Inference Protocol: the model's name from GET /v1/model, then a BYTES input holding the base64 image.
MODEL=$(call "$BASE/v1/model")
jq -n --arg image "$(base64 -w0 "$IMAGE")" \
   '{inputs: [{name: "images", datatype: "BYTES", shape: [1], data: [$image]}], outputs: [{name: "predicted_class"}]}' |
  call -H 'Content-Type: application/json' -d @- "$BASE/v2/models/$(jq -r .name <<< "$MODEL")/infer" |
  jq -r --argjson labels "$(jq .labels <<< "$MODEL")" '.outputs[0].data[0] as $class | "v2 infer: class \($class) \($labels[$class])"'
