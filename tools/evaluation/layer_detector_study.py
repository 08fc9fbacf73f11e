#!/usr/bin/env python3
"""Offline study: does a kNN token score taken after the first transformer blocks find a patch better than the
score on the embedded tokens that the service uses?

A PyTorch copy of a model package (weights read from its model.onnx by tools/model/vitlib.py) scores every token
at depth L (0: the tokens after position embedding, the service's detector; L >= 1: the same sequence after L
blocks) by its mean distance to the k nearest tokens of the same position in a bank of clean calibration images,
over a per-position threshold (the 99% quantile of clean scores on images outside the bank). Flagging is the
service's default rule (every token over threshold, at least the K = 2 strongest, and the 2x2 window with the largest
sum of ratios), and flagged tokens are dropped from attention at the input; so only the ranking changes with L, and
the cost would be L blocks of one more pass. Patches are per-image patches at a seeded random place, made by 100
steps of signed-gradient ascent on the undefended model's cross-entropy (not the evaluation's attack; the same
patches for every row). With --attention, the attention each token receives in each block is scored the same way.
Tuning data only: the bank from the 500 calibration images, thresholds from tuning images
0-249, every figure on tuning images 250-499.

    /usr/bin/python3 tools/evaluation/layer_detector_study.py models/fashion-vit-tiny --depth 6 --stem-channels 32 \
        --stem-kind local --patch-size 4

With --adversarial, the images scored are instead those an evaluation's attacks made (`strapvit evaluate
--save-attacks FOLDER`; several folders are joined in order, one attack per folder chosen by --attack-match), with
the placements it wrote. Those attacks are made on tuning images 0-99, so the thresholds then come from tuning images
250-499 and the clean rows from tuning images 100-249, and no study patches are made unless --sizes is given.

    /usr/bin/python3 tools/evaluation/layer_detector_study.py models/fashion-vit-tiny --layers 0,1,2,3,4 --sizes "" \
        --adversarial run-1/attacks,run-2/attacks --attack-match "location-optimised"
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "model"))
from vitlib import ViT, load_onnx_weights  # noqa: E402


def read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def embedded(model: ViT, x: torch.Tensor) -> torch.Tensor:
    """The [B, P+1, D] sequence after position embedding, class token first (the service's tokens tensor)."""
    t = model.patch_embed(model.stem(x)).flatten(2).transpose(1, 2)
    return torch.cat([model.cls_token.expand(x.shape[0], 1, model.dim), t], dim=1) + model.pos_embed


def tokens_at(model: ViT, x: torch.Tensor, depth: int) -> torch.Tensor:
    """Patch tokens [B, P, D] after `depth` blocks of the full sequence (0: after position embedding)."""
    t = embedded(model, x)
    for blk in model.blocks[:depth]:
        t = blk(t)
    return t[:, 1:]


def attention_received(model: ViT, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per block, the attention each patch token receives ([B, P], mean over heads): from every query, and from the
    class token alone."""
    b, t = x.shape[0], embedded(model, x)
    from_all, from_cls = [], []
    for blk in model.blocks:
        a, h = blk.attn, blk.norm1(t)
        qkv = a.qkv(h).reshape(b, h.shape[1], 3, a.heads, a.head_dim).permute(2, 0, 3, 1, 4)
        att = torch.softmax(torch.matmul(qkv[0] * a.scale, qkv[1].transpose(-2, -1)), dim=-1).mean(1)  # [B, T, T]
        from_all.append(att.mean(1)[:, 1:])
        from_cls.append(att[:, 0, 1:])
        t = blk(t)
    return from_all, from_cls


def knn_scores(feats: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """Mean distance of each token to its k nearest bank tokens of the same position: [B, P]."""
    out = torch.empty(feats.shape[:2])
    for p in range(feats.shape[1]):
        d = torch.cdist(feats[:, p], bank[:, p])  # [B, N]
        out[:, p] = d.topk(k, dim=1, largest=False).values.mean(dim=1)
    return out


# The flagging rule every score is given (set from --min-tokens and --window-over-threshold): the service's default.
RULE = {"min_tokens": 2, "window_over_threshold_only": False}


def flag(ratios: torch.Tensor, grid: int, window: int = 2) -> torch.Tensor:
    """The service's flagging on [B, P] ratios: over 1, at least the K strongest (RULE), and the strongest window
    (with RULE's window_over_threshold_only, only on images with a token over 1)."""
    b, p = ratios.shape
    flags = ratios > 1.0
    over = flags.any(1)
    if RULE["min_tokens"] > 0:
        top = ratios.topk(RULE["min_tokens"], dim=1).indices
        flags.scatter_(1, top, True)
    r = ratios.view(b, 1, grid, grid)
    sums = torch.nn.functional.avg_pool2d(r, window, stride=1) * window * window  # [B, 1, g-w+1, g-w+1]
    side = grid - window + 1
    best = sums.view(b, -1).argmax(dim=1)
    rows, cols = best // side, best % side
    for i in range(b):
        if RULE["window_over_threshold_only"] and not over[i]:
            continue
        for dr in range(window):
            for dc in range(window):
                flags[i, (rows[i] + dr) * grid + cols[i] + dc] = True
    return flags


def patch_mask(places: np.ndarray, size: int, image: int, token: int) -> torch.Tensor:
    """[B, P] bool: the tokens each patch touches."""
    grid = image // token
    m = torch.zeros(len(places), grid * grid, dtype=torch.bool)
    for i, (y, x) in enumerate(places):
        for r in range(y // token, (y + size - 1) // token + 1):
            for c in range(x // token, (x + size - 1) // token + 1):
                m[i, r * grid + c] = True
    return m


def make_patches(model, images, labels, size, steps, mean, std, seed):
    """Per-image patches: pixels in [0, 1] at a seeded random place, signed-gradient ascent on cross-entropy."""
    gen = np.random.default_rng(seed)
    n, h, w = images.shape[0], images.shape[2], images.shape[3]
    places = np.stack([gen.integers(0, h - size + 1, n), gen.integers(0, w - size + 1, n)], axis=1)
    mask = torch.zeros_like(images)
    for i, (y, x) in enumerate(places):
        mask[i, :, y:y + size, x:x + size] = 1
    patch = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed))
    for step in range(steps):
        patch.requires_grad_(True)
        adv = images * (1 - mask) + patch * mask
        loss = torch.nn.functional.cross_entropy(model((adv - mean) / std), labels)
        grad, = torch.autograd.grad(loss, patch)
        with torch.no_grad():
            lr = 0.1 * (1 - step / steps) + 0.01
            patch = (patch + lr * grad.sign()).clamp(0, 1)
    return (images * (1 - mask) + patch.detach() * mask), places


def kcenter(points: torch.Tensor, size: int) -> torch.Tensor:
    """Greedy k-center coreset of `size` rows (PatchCore's subsampling, without the projection), first pick row 0."""
    if size >= len(points):
        return points
    chosen = [0]
    nearest = torch.cdist(points, points[:1])[:, 0]
    for _ in range(size - 1):
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = torch.minimum(nearest, torch.cdist(points, points[pick:pick + 1])[:, 0])
    return points[chosen]


def pooled_scores(feats: torch.Tensor, bank: torch.Tensor, k: int, offset: torch.Tensor) -> torch.Tensor:
    """knn_scores against one bank pooled over positions, as the service's is: `bank` holds token contents ([M, D],
    each with its position's offset subtracted), and every token has its own position's offset ([P, D], the tokens of
    a blank image) subtracted before it is compared with the contents of every position."""
    out = torch.empty(feats.shape[:2])
    for p in range(feats.shape[1]):
        out[:, p] = torch.cdist(feats[:, p] - offset[p], bank).topk(k, dim=1, largest=False).values.mean(dim=1)
    return out


def load_attacks(folders: list[str], match: str, image: int, token: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """The images [N, 1, H, W] in [0, 1], labels, patch-token masks and the saved answers of the one attack per folder
    whose scenario contains `match`, joined in folder order."""
    xs, ys, masks, answers = [], [], [], {"undefendedCorrect": "", "defendedCorrect": ""}
    for folder in folders:
        saved = json.load(open(os.path.join(folder, "attacks.json"), encoding="utf-8"))
        chosen = [a for a in saved["attacks"] if match in a["scenario"]]
        if len(chosen) != 1:
            raise SystemExit(f"{folder}: {len(chosen)} attacks match '{match}'; name one")
        attack = chosen[0]
        path = os.path.join(folder, attack["images"])
        xs.append(torch.tensor(read_idx(path), dtype=torch.float32)[:, None] / 255)
        ys.append(torch.tensor(read_idx(path.replace("-images-idx3-ubyte", "-labels-idx1-ubyte")).astype(np.int64)))
        size = attack["placements"][0]["size"]
        places = np.array([[q["y"], q["x"]] for q in attack["placements"]])
        masks.append(patch_mask(places, size, image, token))
        for key in answers:
            answers[key] += attack[key]
        answers["scenario"] = attack["scenario"]
    return torch.cat(xs), torch.cat(ys), torch.cat(masks), answers


def scored(model, x, labels, ratios: torch.Tensor, patch: torch.Tensor | None, grid: int) -> tuple[dict, torch.Tensor]:
    """Flags from [B, P] ratios by the service's rule, the accuracy with them dropped, and where they fall; and the flags."""
    flags = flag(ratios.clone(), grid)
    row = {"accuracy": accuracy_dropped(model, x, labels, flags), "anyOver": (ratios > 1).any(1).float().mean().item()}
    if patch is not None:
        top = ratios.argmax(1)
        row["topInPatch"] = patch[torch.arange(len(top)), top].float().mean().item()
        row["patchCovered"] = ((flags & patch).sum(1).float() / patch.sum(1)).mean().item()
    return row, flags


def accuracy_dropped(model, x, labels, drop: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x, key_mask=drop).argmax(1) == labels).float().mean().item()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("package")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mlp-ratio", type=float, default=2.0)
    p.add_argument("--stem-channels", type=int, default=32)
    p.add_argument("--stem-kind", default="local")
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--layers", default="0,1,2,3")
    p.add_argument("--sizes", default="4,6")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--quantile", type=float, default=0.99)
    p.add_argument("--samples", default="samples/fashion-mnist")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--attention", action="store_true",
                   help="also score each token by the attention it receives in each block (from every query, and from "
                        "the class token), over the same per-position clean quantile")
    p.add_argument("--adversarial", help="comma-separated folders written by `strapvit evaluate --save-attacks`: score "
                                         "those images instead (thresholds from tuning images 250-499, clean rows on 100-249)")
    p.add_argument("--attack-match", default="location-optimised", help="text of the scenario to take from each folder")
    p.add_argument("--pooled", action="store_true", help="also score depth 0 against one bank pooled over positions "
                                                          "(position offsets subtracted), the service's kind of bank")
    p.add_argument("--pooled-coreset", default="", help="with --pooled: also pooled banks cut to these sizes by greedy "
                                                        "k-center (comma-separated; the service keeps 1024), k = 3")
    p.add_argument("--min-tokens", type=int, default=2, help="K: tokens always flagged (the service's Defense:MinTokens)")
    p.add_argument("--window-over-threshold", action="store_true",
                   help="flag the window only on images with a token over threshold (Defense:WindowOnlyOverThreshold)")
    p.add_argument("--output", help="write the figures as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    RULE.update(min_tokens=args.min_tokens, window_over_threshold_only=args.window_over_threshold)
    torch.manual_seed(0)

    manifest = json.load(open(os.path.join(args.package, "model.json")))
    mean, std = manifest["input"]["mean"][0], manifest["input"]["std"][0]
    model = ViT(patch_size=args.patch_size, dim=args.dim, depth=args.depth, heads=args.heads, mlp_ratio=args.mlp_ratio,
                stem_channels=args.stem_channels, stem_kind=args.stem_kind)
    load_onnx_weights(model, os.path.join(args.package, "model.onnx"))
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)

    def load(name):
        x = torch.tensor(read_idx(f"{args.samples}/{name}-images-idx3-ubyte.gz"), dtype=torch.float32)[:, None] / 255
        y = torch.tensor(read_idx(f"{args.samples}/{name}-labels-idx1-ubyte.gz").astype(np.int64))
        return x, y

    calib_x, _ = load("calib-500")
    tune_x, tune_y = load("tune-500")
    if args.adversarial:
        thr_x, eval_x, eval_y, clean_name = tune_x[250:], tune_x[100:250], tune_y[100:250], "tuning images 100-249"
    else:
        thr_x, eval_x, eval_y, clean_name = tune_x[:250], tune_x[250:], tune_y[250:], "tuning images 250-499"
    norm = lambda x: (x - mean) / std  # noqa: E731
    grid = 28 // args.patch_size
    with torch.no_grad():
        plain = (model(norm(eval_x)).argmax(1) == eval_y).float().mean().item()
    print(f"undefended clean accuracy on {clean_name}: {plain:.3f}")

    # Every set normalised once, as the model reads it; the patches are made in pixel space. Each set has its labels.
    sets = {"clean": (norm(eval_x), None, eval_y)}
    results = {"plain": plain, "rows": []}
    if args.adversarial:
        adv_x, adv_y, adv_patch, answers = load_attacks(args.adversarial.split(","), args.attack_match, 28, args.patch_size)
        x = norm(adv_x)
        with torch.no_grad():
            undefended = (model(x).argmax(1) == adv_y).float().mean().item()
        oracle = accuracy_dropped(model, x, adv_y, adv_patch)
        defended = np.mean([c == "1" for c in answers["defendedCorrect"]])
        service_none = np.mean([c == "1" for c in answers["undefendedCorrect"]])
        print(f"attack: {answers['scenario']}\n{len(adv_y)} images: undefended {undefended:.3f} (the evaluation's: "
              f"{service_none:.3f}), the service's defense {defended:.3f}, oracle flags dropped {oracle:.3f}")
        results["adversarial"] = {"scenario": answers["scenario"], "images": len(adv_y), "undefended": undefended,
                                  "serviceDefended": defended, "oracle": oracle}
        sets["adaptive"] = (x, adv_patch, adv_y)
    for size in [int(s) for s in args.sizes.split(",") if s]:
        adv, places = make_patches(model, eval_x, eval_y, size, args.steps, mean, std, seed=size)
        x, patch = norm(adv), patch_mask(places, size, 28, args.patch_size)
        sets[f"{size}x{size}"] = (x, patch, eval_y)
        with torch.no_grad():
            undefended = (model(x).argmax(1) == eval_y).float().mean().item()
        oracle = accuracy_dropped(model, x, eval_y, patch)
        print(f"{size}x{size}: undefended {undefended:.3f}, oracle flags dropped {oracle:.3f}")
    calib_n, thr_n = norm(calib_x), norm(thr_x)

    print(f"{'depth':>5} {'set':>6} {'accuracy':>9} {'any over':>9} {'top in patch':>13} {'patch covered':>14} {'tokens':>7}")
    for depth in [int(s) for s in args.layers.split(",")]:
        with torch.no_grad():
            bank = tokens_at(model, calib_n, depth)
            thresholds = torch.quantile(knn_scores(tokens_at(model, thr_n, depth), bank, args.k), args.quantile, dim=0)
            for name, (x, patch, y) in sets.items():
                ratios = knn_scores(tokens_at(model, x, depth), bank, args.k) / thresholds
                found, flags = scored(model, x, y, ratios, patch, grid)
                row = {"depth": depth, "set": name, **found, "tokens": flags.sum(1).float().mean().item()}
                results["rows"].append(row)
                print(f"{depth:5d} {name:>6} {row['accuracy']:9.3f} {row['anyOver']:9.3f} {row.get('topInPatch', float('nan')):13.3f} "
                      f"{row.get('patchCovered', float('nan')):14.3f} {row['tokens']:7.2f}")
    if args.pooled:
        with torch.no_grad():
            blank = tokens_at(model, norm(torch.zeros(1, 1, 28, 28)), 0)[0]
            contents = (tokens_at(model, calib_n, 0) - blank).reshape(-1, model.dim)
            banks = [(f"pooled, k={k}", contents, k) for k in sorted({3, args.k})]
            banks += [(f"pooled coreset {size}, k=3", kcenter(contents, size), 3) for size in [int(v) for v in args.pooled_coreset.split(",") if v]]
            thr_tokens = tokens_at(model, thr_n, 0)
            set_tokens = {name: tokens_at(model, x, 0) for name, (x, _, _) in sets.items()}
            for label, bank, k in banks:
                thresholds = torch.quantile(pooled_scores(thr_tokens, bank, k, blank), args.quantile, dim=0)
                for name, (x, patch, y) in sets.items():
                    found, flags = scored(model, x, y, pooled_scores(set_tokens[name], bank, k, blank) / thresholds, patch, grid)
                    row = {"depth": 0, "bank": label, "set": name, **found, "tokens": flags.sum(1).float().mean().item()}
                    results["rows"].append(row)
                    print(f"{label}, {name}: accuracy {row['accuracy']:.3f}, any over {row['anyOver']:.3f}, top in patch "
                          f"{row.get('topInPatch', float('nan')):.3f}, patch covered {row.get('patchCovered', float('nan')):.3f}, tokens {row['tokens']:.2f}")
    if args.attention:
        with torch.no_grad():
            clean_all, clean_cls = attention_received(model, thr_n)
            received = {name: attention_received(model, x) for name, (x, _, _) in sets.items()}
            for kind, which in (("from every query", 0), ("from the class token", 1)):
                for block in range(len(model.blocks)):
                    threshold = torch.quantile((clean_all, clean_cls)[which][block], args.quantile, dim=0)
                    for name, (x, patch, y) in sets.items():
                        found, _ = scored(model, x, y, received[name][which][block] / threshold, patch, grid)
                        row = {"score": f"attention {kind}", "block": block + 1, "set": name, **found}
                        results["rows"].append(row)
                        print(f"attention {kind}, block {block + 1}, {name}: accuracy {row['accuracy']:.3f}, any over "
                              f"{row['anyOver']:.3f}, top in patch {row.get('topInPatch', float('nan')):.3f}, "
                              f"patch covered {row.get('patchCovered', float('nan')):.3f}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
