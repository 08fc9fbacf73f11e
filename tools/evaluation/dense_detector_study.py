#!/usr/bin/env python3
"""Offline study: on a model whose tokens are 7x7 pixels and have no stem (fashion-vit-p7, fashion-vit-p7-masked), does
scoring every 7x7 window of the image find the evaluation's 4x4 and 6x6 patches better than the service's token kNN
score, at the same share of clean images flagged?

Why: on these models a 6x6 patch rarely fills a token (it straddles two to four of them), so each token it touches is
part clean and scores lower than a token the patch fills; on tune-500 the default flags 77-79% of 6x6-patched images
there, against 93% on the embedded model (4-pixel tokens). A window slid one pixel at a time lines up with the patch
somewhere.

The patch embedding (one 7x7 convolution) is copied into PyTorch from the model's model.onnx. A window's content is
its embedding minus a blank image's, exactly what the service's pooled bank holds for the 16 grid tokens (token minus
the blank image's token at its position); the grid tokens are 16 of the 22x22 windows. Each window is scored by the
mean distance to its 3 nearest entries of a bank of 8,192 clean windows from calibration images 0-399 (drawn at random,
or by the service's greedy k-center coreset), over its place's 99% quantile on calibration images 400-499; a grid
token takes the maximum over the windows whose centre lies in it. Every score is scaled so that tune-500's clean
images are flagged as often as by the service's shipped thresholds. Patches: the very per-image patches
`strapvit evaluate` made on tune-500 for that model (its --patch-cache files, 100 steps, seed 0).

    /usr/bin/python3 tools/evaluation/dense_detector_study.py models/fashion-vit-p7-masked <patch-cache folder>   (15-30 minutes on 2 cores, most of it the coreset)
"""
import base64, hashlib, json, sys
import numpy as np, onnx, torch
from onnx import numpy_helper
from detector_study import calib, knn, patched, report, scale_to, tune
MODEL, CACHE = sys.argv[1].rstrip('/'), sys.argv[2]
onnx_bytes = open(MODEL + '/model.onnx', 'rb').read()
W = {i.name: torch.tensor(numpy_helper.to_array(i).copy()) for i in onnx.load_from_string(onnx_bytes).graph.initializer}
spec = json.load(open(MODEL + '/model.json'))['input']
cal = json.load(open(MODEL + '/defense-calibration.json'))
b = cal['tokens']['bank']; dim, K = b['dim'], b['neighbors']
V = torch.tensor(np.frombuffer(base64.b64decode(b['vectors']), dtype='<f4').reshape(-1, dim).copy())
thr = torch.tensor(np.array(cal['tokens']['bankThreshold'], dtype=np.float32))[1:]
SIDE = W['patch_embed.weight'].shape[-1]; GRID = 28 // SIDE


def embed(x, stride):
    """The patch embedding of images x (N, 28, 28) in [0, 1] at the given stride, minus a blank image's: N, dim, h, w."""
    def conv(v):
        v = ((v - spec['mean'][0]) / spec['std'][0])[:, None]
        return torch.nn.functional.conv2d(v, W['patch_embed.weight'], W['patch_embed.bias'], stride=stride)
    return conv(x) - conv(torch.zeros(1, 28, 28))


def grid_scores(x):
    """The service's score of each grid token against the shipped bank, N x GRID^2."""
    c = embed(x, SIDE).flatten(2).transpose(1, 2)
    return knn(c.reshape(-1, dim), V, K).reshape(len(x), -1)


def dense_scores(x, bank):
    """Every 7x7 window's kNN score against bank, N x h x w (one-pixel steps)."""
    c = embed(x, 1); n, _, h, w = c.shape
    return knn(c.permute(0, 2, 3, 1).reshape(-1, dim), bank, K).reshape(n, h, w)


def to_tokens(r):
    """Window ratios (N, 22, 22) to grid tokens: each token takes the maximum over the windows centred in it."""
    n, h, w = r.shape; half = SIDE // 2
    full = torch.full((n, 1, 28, 28), -1e9); full[:, 0, half:half + h, half:half + w] = r
    return torch.nn.functional.max_pool2d(full, SIDE, SIDE).reshape(n, -1)


def coreset(points, size, seed=0):
    """Greedy k-center (farthest point first), starting from a seeded random point."""
    g = torch.Generator().manual_seed(seed); first = int(torch.randint(len(points), (1,), generator=g))
    picked = [first]; d = ((points - points[first]) ** 2).sum(1)
    for _ in range(size - 1):
        j = int(d.argmax()); picked.append(j); d = torch.minimum(d, ((points - points[j]) ** 2).sum(1))
    return points[picked]


model_hash = hashlib.sha256(onnx_bytes).hexdigest()[:16]
pats = {s: patched(CACHE, s, model_hash) for s in (4, 6)}
ref = calib[400:]


def show(name, c, p):
    report(name, c, {s: (p[s], pats[s][1]) for s in pats}, width=52, grid=GRID, side=SIDE)


grid_c = grid_scores(tune); grid_p = {s: grid_scores(px) for s, (px, _) in pats.items()}
tok_c = grid_c / thr[None]
tok_p = {s: v / thr[None] for s, v in grid_p.items()}
rate = (tok_c > 1).any(1).float().mean().item()
print(f'{MODEL.split("/")[-1]}: {GRID}x{GRID} tokens of {SIDE} px, bank {len(V)} entries, k = {K}; tune-500 clean flagged by the shipped thresholds {rate * 100:.1f}%')
show('token kNN (the service, shipped thresholds)', tok_c, tok_p)
shape = torch.quantile(grid_scores(ref), 0.99, dim=0)
show('token kNN, thresholds as the others', *scale_to(grid_c / shape, {s: v / shape for s, v in grid_p.items()}, rate))
windows = embed(calib[:400], 1).permute(0, 2, 3, 1).reshape(-1, dim)
g = torch.Generator().manual_seed(0)
banks = {'random': windows[torch.randperm(len(windows), generator=g)[:8192]], 'coreset': coreset(windows, 8192)}
for name, bank in banks.items():
    place = torch.quantile(dense_scores(ref, bank), 0.99, dim=0)
    c = to_tokens(dense_scores(tune, bank) / place); p = {s: to_tokens(dense_scores(px, bank) / place) for s, (px, _) in pats.items()}
    c, p = scale_to(c, p, rate)
    show(f'windows at 1 px ({name} bank), per-place thresholds', c, p)
    show(f'max(token, windows at 1 px, {name} bank)', *scale_to(torch.maximum(tok_c, c), {s: torch.maximum(tok_p[s], p[s]) for s in pats}, rate))
