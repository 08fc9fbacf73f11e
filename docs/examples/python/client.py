#!/usr/bin/env python3
"""Classify an image, attack it with FGSM, and classify it again through the Open Inference Protocol (v2).

Needs requests (Debian: apt-get install python3-requests). From the repository root:

    /usr/bin/python3 docs/examples/python/client.py http://localhost:5080 samples/ankle-boot.png

Set STRAPVIT_API_KEY when the service has API keys (the attack endpoints need one then).
"""
import base64
import mimetypes
import os
import sys

import requests


def answer(response):
    """The JSON answer, or exit with the problem's title and detail (RFC 7807) when the service refused."""
    if not response.ok:
        problem = response.json() if response.headers.get("Content-Type", "").endswith("json") else {}
        sys.exit(f"{response.request.method} {response.url}: {response.status_code} "
                 f"{problem.get('title', response.reason)}: {problem.get('detail', response.text)}")
    return response.json()


def main(base, path):
    session = requests.Session()
    if os.environ.get("STRAPVIT_API_KEY"):
        session.headers["X-API-Key"] = os.environ["STRAPVIT_API_KEY"]
    with open(path, "rb") as f:
        image = f.read()
    upload = {"image": (os.path.basename(path), image, mimetypes.guess_type(path)[0] or "application/octet-stream")}

    # 1. Classify: a multipart upload in the field "image"; the defense runs in its default mode (mitigate).
    classified = answer(session.post(f"{base}/v1/classify", params={"topK": 3}, files=upload))
    top = classified["predictions"][0]
    print(f"classify: {top['label']} ({top['probability']:.3f})")

    # 2. FGSM, untargeted, with an L-infinity budget of 8/255 in [0, 1] pixel space.
    fgsm = answer(session.post(f"{base}/v1/attacks/fgsm", data={"epsilon": 8 / 255}, files=upload))
    print(f"fgsm: {fgsm['original']['label']} -> {fgsm['adversarial']['label']} "
          f"(success: {str(fgsm['success']).lower()}, linf: {fgsm['linf']:.4f})")

    # 3. Open Inference Protocol: the model's name from GET /v1/model, then a BYTES input holding the base64 image.
    model = answer(session.get(f"{base}/v1/model"))
    inference = {
        "inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(image).decode()]}],
        "outputs": [{"name": "predicted_class"}],
    }
    inferred = answer(session.post(f"{base}/v2/models/{model['name']}/infer", json=inference))
    predicted = inferred["outputs"][0]["data"][0]
    print(f"v2 infer: class {predicted} {model['labels'][predicted]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://localhost:5080",
         sys.argv[2] if len(sys.argv) > 2 else "samples/ankle-boot.png")
