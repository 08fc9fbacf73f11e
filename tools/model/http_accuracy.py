#!/usr/bin/python3
"""Accuracy of a running StrapVitService, measured through its HTTP API.

    dotnet run --project src/StrapVit.Api &            # serves on http://localhost:5080
    /usr/bin/python3 tools/model/http_accuracy.py [--url http://localhost:5080] [--count 1000] [--defense off]

Posts the first --count images of samples/fashion-mnist/test-1000 as 8-bit grayscale PNGs (raw body, image/png) to
POST /v1/classify and compares the top-1 index with the label. Needs only the standard library and Pillow.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import time
import urllib.request

from PIL import Image


def read_idx(path: str) -> tuple[bytes, list[int]]:
    with gzip.open(path, "rb") as f:
        data = f.read()
    return data, [int.from_bytes(data[4 * i:4 * i + 4], "big") for i in range(4)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://localhost:5080")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--defense", default="off", choices=["off", "detect", "mitigate"])
    ap.add_argument("--images", default="samples/fashion-mnist/test-1000-images-idx3-ubyte.gz")
    ap.add_argument("--labels", default="samples/fashion-mnist/test-1000-labels-idx1-ubyte.gz")
    args = ap.parse_args()

    images, (magic, n, rows, cols) = read_idx(args.images)
    assert magic == 2051, "not an IDX image file"
    with gzip.open(args.labels, "rb") as f:
        labels = f.read()[8:]
    count = min(args.count, n)
    correct = 0
    t0 = time.time()
    for i in range(count):
        pixels = images[16 + i * rows * cols:16 + (i + 1) * rows * cols]
        png = io.BytesIO()
        Image.frombytes("L", (cols, rows), pixels).save(png, format="PNG")
        req = urllib.request.Request(f"{args.url}/v1/classify?topK=1&defense={args.defense}", data=png.getvalue(),
                                     headers={"Content-Type": "image/png"}, method="POST")
        with urllib.request.urlopen(req) as resp:
            top = json.load(resp)["predictions"][0]["index"]
        correct += int(top == labels[i])
    print(f"{args.url} defense={args.defense}: {correct}/{count} = {100 * correct / count:.2f}% "
          f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
