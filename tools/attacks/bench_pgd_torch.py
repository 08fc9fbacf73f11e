#!/usr/bin/python3
"""PyTorch PGD loop on the same ViT as the service, for the PGD speed ratio in docs/BENCHMARKS.md (a benchmark, not
a test).

Usage (from the repository root, with Debian's torch; NOT the python3 first on PATH):
    /usr/bin/python3 tools/attacks/bench_pgd_torch.py [--checkpoint tools/model/out/fashion-vit-tiny.pt]
        [--out tools/attacks/out/bench-vit] [--batch 1,32] [--steps 10] [--repeats 5] [--threads 2]
    dotnet run -c Release --project src/StrapVit.Cli -- bench-pgd tools/attacks/out/bench-vit --batch 1,32 --threads 2

It builds tools/model/vitlib.ViT with the embedded model's architecture (28x28x1, 3x3 stem of 32 channels, patch 4,
dim 64, depth 6, 4 heads, MLP ratio 2), loads the training checkpoint when it exists (else seeded random weights: the cost is the same),
exports it as a model package to --out (so the C# side runs exactly these weights), and times, per batch size,
the same protocol as `strapvit bench-pgd`: untargeted Linf PGD, eps 8/255, step 2/255, no random start, no early
stop, `steps` forward+backward passes plus the 3 verdict forwards (clean, float, 8-bit), best of `repeats`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
import vitlib  # noqa: E402

MEAN, STD = vitlib.FASHION_MEAN, vitlib.FASHION_STD


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="tools/model/out/fashion-vit-tiny.pt")
    ap.add_argument("--out", default="tools/attacks/out/bench-vit")
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--stem-channels", type=int, default=32, help="the embedded model's 3x3 stem; 0 = plain patch embedding")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = vitlib.ViT(image_size=28, patch_size=4, in_chans=1, num_classes=10, dim=64, depth=args.depth, heads=4, mlp_ratio=2.0,
                       stem_channels=args.stem_channels)
    weights = "random (seed 0)"
    if os.path.exists(args.checkpoint):
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu"))
        weights = args.checkpoint
    model.eval()

    os.makedirs(args.out, exist_ok=True)
    vitlib.export_onnx(model, os.path.join(args.out, "model.onnx"), torch.rand(2, 1, 28, 28), "input", "logits")
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump({"name": "bench-fashion-vit", "input": {"name": "input", "channels": 1, "height": 28, "width": 28,
                                                          "mean": [MEAN], "std": [STD]},
                   "output": "logits", "labels": vitlib.FASHION_LABELS, "patchSize": 4}, f, indent=2)

    for p in model.parameters():
        p.requires_grad_(False)

    def logits(x):
        return model((x - MEAN) / STD)

    def pgd(x0, labels, eps=8 / 255, alpha=2 / 255):
        with torch.no_grad():
            logits(x0)  # clean verdict
        x = x0.clone()
        for _ in range(args.steps):
            x.requires_grad_(True)
            loss = F.cross_entropy(logits(x), labels, reduction="sum")
            (g,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = torch.min(torch.max(x + alpha * g.sign(), x0 - eps), x0 + eps).clamp(0, 1)
        with torch.no_grad():
            logits(x)  # float verdict
            logits(torch.round(x * 255) / 255)  # 8-bit verdict
        return x

    print(f"torch {torch.__version__}, {args.threads} threads, weights {weights}, package {args.out}")
    for batch in [int(b) for b in args.batch.split(",")]:
        gen = torch.Generator().manual_seed(batch)
        x0 = torch.rand(batch, 1, 28, 28, generator=gen)
        with torch.no_grad():
            labels = logits(x0).argmax(1)
        pgd(x0, labels)
        best, best_cpu = float("inf"), float("inf")
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            pgd(x0, labels)
            best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
        # CPU time is the robust figure on a shared machine (with --threads 1 it is the work done).
        print(f"torch batch={batch} steps={args.steps} threads={args.threads}: wall {best * 1000:.1f} ms = "
              f"{batch * args.steps / best:.1f} image-steps/s; cpu {best_cpu * 1000:.1f} ms = "
              f"{batch * args.steps / best_cpu:.1f} image-steps per cpu-second")


if __name__ == "__main__":
    main()
