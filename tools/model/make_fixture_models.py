#!/usr/bin/python3
"""Write small, differently shaped model packages for tests (no training).

    /usr/bin/python3 tools/model/make_fixture_models.py [--out tests/fixtures/models] [--seed 1234]

rgb-vit-32/: RGB ViT, 32x32 input, patch 8 (16 patches + class token), dim 32, depth 2, 5 labels,
    random weights from a fixed seed, opset 17, dynamic batch, input "pixels_in", output "scores",
    mean [0.5, 0.4, 0.3], std [0.2, 0.25, 0.3].
    reference.json: 3 seeded images in [0,1] pixel space (flat C*H*W, channels-first) and the logits
    torch computes after applying (x - mean) / std itself.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vitlib  # noqa: E402

RGB_NAME = "rgb-vit-32"
RGB_LABELS = ["alpha", "bravo", "charlie", "delta", "echo"]
RGB_MEAN = [0.5, 0.4, 0.3]
RGB_STD = [0.2, 0.25, 0.3]


def f32(v) -> float:
    """A float32 value as the shortest decimal that round-trips to the same float32."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-")) if np.isfinite(v) else v


def make_rgb_vit_32(out_root: str, seed: int):
    torch.manual_seed(seed)
    model = vitlib.ViT(image_size=32, patch_size=8, in_chans=3, num_classes=len(RGB_LABELS),
                       dim=32, depth=2, heads=4, mlp_ratio=2.0)
    # The ViT's training init (std 0.02) gives near-zero, nearly identical logits; for a numerical
    # reference we want logits of order 1 that differ between images, so re-draw the weights wider.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.ndim <= 1:
                p.copy_(0.1 * torch.randn_like(p))
            elif name in ("cls_token", "pos_embed"):
                p.copy_(0.5 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in ** 0.5)
    model.eval()

    out = os.path.join(out_root, RGB_NAME)
    os.makedirs(out, exist_ok=True)
    onnx_path = os.path.join(out, "model.onnx")
    mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(RGB_STD).view(1, 3, 1, 1)

    g = torch.Generator().manual_seed(seed + 1)
    # Pixel values k/255 (like a decoded 8-bit image), so the float text is exact enough either way.
    pixels = torch.randint(0, 256, (3, 3, 32, 32), generator=g).float() / 255.0
    x_norm = (pixels - mean) / std

    vitlib.export_onnx(model, onnx_path, x_norm[:2], "pixels_in", "scores")

    import onnx

    m = onnx.load(onnx_path)
    onnx.checker.check_model(m, full_check=True)
    tokens = vitlib.find_tokens_tensor(m, model.pos_embed.detach().numpy())
    inf = vitlib.inferred_shape(m, tokens)
    hook = vitlib.tap_shape(model, x_norm)
    assert hook == (3, 17, 32), hook
    assert inf is None or list(inf[1:]) == [17, 32], inf

    with torch.no_grad():
        logits = model(x_norm).numpy()
    runner = vitlib.OnnxNumpyRunner(m)
    res = runner.run({"pixels_in": x_norm.numpy()}, outputs=["scores", tokens])
    diff = float(np.abs(res["scores"] - logits).max())
    assert res[tokens].shape == (3, 17, 32)
    assert diff < 1e-5, diff
    one = runner.run({"pixels_in": x_norm[1:2].numpy()})["scores"]
    assert np.abs(one - logits[1:2]).max() < 1e-5
    print(f"{RGB_NAME}: tokens {tokens!r} shape {hook}; onnx(numpy) vs torch max diff {diff:.2e}; "
          f"logit range [{logits.min():.3f}, {logits.max():.3f}], argmax {logits.argmax(1).tolist()}")

    meta = {
        "name": RGB_NAME,
        "input": {"name": "pixels_in", "channels": 3, "height": 32, "width": 32, "mean": RGB_MEAN, "std": RGB_STD},
        "output": "scores",
        "labels": RGB_LABELS,
        "patchSize": 8,
        "tokens": {"tensor": tokens, "classToken": True},
    }
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    ref = {
        "description": "3 seeded images in [0,1] pixel space (values k/255), flat float arrays of length C*H*W, "
                       "row-major, channels-first [C=3,H=32,W=32]. 'logits' are what torch computes for the "
                       "model after applying (x - mean) / std to the pixels itself (mean/std from model.json). "
                       "Compare with tolerance 1e-4.",
        "model": RGB_NAME,
        "shape": [3, 32, 32],
        "mean": RGB_MEAN,
        "std": RGB_STD,
        "tolerance": 1e-4,
        "generator": f"torch.randint(0, 256, (3, 3, 32, 32), torch.Generator().manual_seed({seed + 1})) / 255",
        "images": [
            {
                "pixels": [f32(v) for v in pixels[i].reshape(-1).tolist()],
                "logits": [f32(v) for v in logits[i].tolist()],
                "argmax": int(logits[i].argmax()),
            }
            for i in range(pixels.shape[0])
        ],
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
        f.write("\n")

    for name in ("model.onnx", "model.json", "reference.json"):
        size = os.path.getsize(os.path.join(out, name))
        print(f"  {name}: {size} bytes")
        assert size < 300 * 1024, name


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/models")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    make_rgb_vit_32(args.out, args.seed)


if __name__ == "__main__":
    main()
