#!/usr/bin/python3
"""Certified-accuracy proxy of a fashion-vit model.onnx for the service's certify mask set (torch, key masking).

Usage (from the repository root, with Debian's torch):
    /usr/bin/python3 tools/model/certify_proxy.py models/fashion-vit-tiny-certify/model.onnx [more.onnx ...] \
        --images 500 --threads 1

The mask set is that of the service for a 4x4-pixel patch on the 7x7 token grid: every 3x3-token window at stride 1
(25 windows, top-left 0..4 on each axis) and, for the second round, every pair of two different windows (300 pairs).
A masked token is excluded as an attention key in every block, which at the class token equals dropping it from the
sequence (what the service does). An image counts as certified (proxy) when the prediction under all 25 single masks
and all 300 pairs is the same and correct. Also reported: clean accuracy on all 10,000 test images and accuracy with
one and with two random 3x3 windows dropped (all 10,000; the seeds of train_fashion_vit.masked_report, 1235/1236).
Results are printed as one JSON line per model ("PROXY {...}") and optionally written with --json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vitlib  # noqa: E402
from train_fashion_vit import evaluate, grid_windows, load_split  # noqa: E402


@torch.no_grad()
def dropped_predictions(model, x_u8, masks, batch=500):
    """Predictions [len(masks), N] with each mask's tokens really dropped from the sequence (what the service
    does); the token embedding (stem, patchify, class token, position embedding) is computed once per image."""
    from train_fashion_vit import normalise

    out = []
    for i in range(0, x_u8.shape[0], batch):
        x = normalise(x_u8[i:i + batch])
        b = x.shape[0]
        t = model.patch_embed(model.stem(x)).flatten(2).transpose(1, 2)
        t = torch.cat([model.cls_token.expand(b, 1, model.dim), t], dim=1) + model.pos_embed
        rows = []
        for m in masks:
            keep = torch.cat([torch.zeros(1, dtype=torch.long), torch.nonzero(~m).squeeze(1) + 1])
            h = t[:, keep]
            for blk in model.blocks:
                h = blk(h)
            rows.append(model.head(model.norm(h)[:, 0]).argmax(1))
        out.append(torch.stack(rows))
    return torch.cat(out, dim=1)


@torch.no_grad()
def proxy(model, x_test, y_test, images, side=3, batch=1000, drop=False):
    t0 = time.time()
    grid = int(round(model.num_patches ** 0.5))
    out = {"window_side": side, "grid": grid}
    out["clean_acc_10000"] = (evaluate(model, x_test, y_test, batch) == y_test).float().mean().item()
    for k in (1, 2):
        km = vitlib.fixed_window_mask(x_test.shape[0], grid, k, side, torch.Generator().manual_seed(1234 + k))
        out[f"random_{k}_windows_acc_10000"] = (evaluate(model, x_test, y_test, batch, km) == y_test).float().mean().item()
    wins = grid_windows(grid, side)                                   # [25, 49]
    masks = [wins[i] for i in range(len(wins))]
    masks += [wins[i] | wins[j] for i in range(len(wins)) for j in range(i + 1, len(wins))]
    n = images
    x, y = x_test[:n], y_test[:n]
    if drop:
        preds = dropped_predictions(model, x, masks)                                       # [325, n]
    else:
        preds = torch.stack([evaluate(model, x, y, batch, m.expand(n, -1)) for m in masks])   # [325, n]
    single, pairs = preds[:len(wins)], preds[len(wins):]
    same = (preds == preds[0:1]).all(0)
    cert = same & (preds[0] == y)
    clean_first = evaluate(model, x, y, batch) == y
    out.update({
        "method": "tokens dropped from the sequence" if drop else "attention-key masking",
        "single_masks": int(single.shape[0]), "pair_masks": int(pairs.shape[0]), "images": n,
        f"clean_acc_first_{n}": clean_first.float().mean().item(),
        f"single_mean_acc_first_{n}": (single == y).float().mean().item(),
        f"pair_mean_acc_first_{n}": (pairs == y).float().mean().item(),
        f"single_all_correct_first_{n}": (single == y).all(0).float().mean().item(),
        f"all_masks_consistent_first_{n}": same.float().mean().item(),
        f"certified_proxy_first_{n}": cert.float().mean().item(),
        f"certified_count_first_{n}": int(cert.sum().item()),
        "seconds": round(time.time() - t0, 1),
    })
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("onnx", nargs="+")
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stem-channels", type=int, default=32)
    p.add_argument("--data-dir", default=vitlib.FASHION_DIR)
    p.add_argument("--drop", action="store_true",
                   help="drop the masked tokens from the sequence (embedding computed once; faster) instead of "
                        "key masking (the two agree to ~1e-6 in the logits)")
    p.add_argument("--json", default=None, help="write {onnx path: result} here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x_test, y_test = load_split(args.data_dir, "t10k")
    results = {}
    for path in args.onnx:
        model = vitlib.ViT(image_size=28, patch_size=4, in_chans=1, num_classes=10, dim=64, depth=6, heads=4,
                           mlp_ratio=2.0, stem_channels=args.stem_channels)
        vitlib.load_onnx_weights(model, path)
        model.eval()
        r = proxy(model, x_test, y_test, args.images, drop=args.drop)
        results[os.path.relpath(path)] = r
        print(f"PROXY {os.path.relpath(path)}: " + json.dumps(r), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
                f.write("\n")


if __name__ == "__main__":
    main()
