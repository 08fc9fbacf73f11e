#!/usr/bin/python3
"""Writes the odd-but-valid images that ImageSharp cannot encode itself (used by the decoder tests).

Run from the repository root:  /usr/bin/python3 tools/images/make_odd_images.py
"""
from pathlib import Path

from PIL import Image

out = Path("tests/fixtures/images")
out.mkdir(parents=True, exist_ok=True)

# CMYK JPEG (as print workflows produce): pure blue = C=255, M=255, Y=0, K=0 in PIL's (non-inverted) CMYK.
Image.new("CMYK", (8, 8), (255, 255, 0, 0)).save(out / "cmyk-blue-8x8.jpg", quality=95)
print("wrote", out / "cmyk-blue-8x8.jpg")
