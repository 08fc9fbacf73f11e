#!/usr/bin/python3
"""PyTorch autograd timings for the same models, weights, batch sizes and thread count as the C# benchmarks.

Usage (from the repository root, after export_vit_b16.py has written the package):
    /usr/bin/python3 tools/gradients/bench_torch.py --model vit-b16 --batch 1 8 --threads 2
    /usr/bin/python3 tools/gradients/bench_torch.py --model tiny --batch 1 32 --threads 2

"gradient" is what the service's cross-entropy graph computes: normalize, forward, per-sample cross-entropy and
d(sum loss)/d pixels, with the weights frozen (requires_grad=False), so no weight gradient is computed on either
side. "forward" is the eval-mode forward under no_grad. Reports median wall and process-CPU milliseconds over
--repeats runs (CPU time is the figure to compare with the C# `cpu-ratio` verb on a machine shared with other jobs).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

import benchmodels


def timed(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(times), min(times), statistics.median(cpu)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vit-b16", choices=sorted(benchmodels.SPECS))
    p.add_argument("--batch", type=int, nargs="+", default=[1])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--package", help="exported package folder (default tools/gradients/out/<model>)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    c, size, _, classes, mean, std = benchmodels.SPECS[args.model]
    model = benchmodels.make(args.model)
    for prm in model.parameters():
        prm.requires_grad_(False)
    mean_t = torch.tensor(mean).view(1, c, 1, 1)
    std_t = torch.tensor(std).view(1, c, 1, 1)

    package = args.package or os.path.join("tools", "gradients", "out", args.model)
    ref_path = os.path.join(package, "reference.json")
    if os.path.exists(ref_path):
        with open(ref_path) as f:
            ref = torch.tensor(json.load(f)["probe_logits"])
        with torch.no_grad():
            got = model((benchmodels.probe_input(args.model) - mean_t) / std_t)[:, :8]
        assert torch.allclose(got, ref, atol=1e-4), "rebuilt weights differ from the exported package"
        print(f"weights match {package}/model.onnx")

    for batch in args.batch:
        x0 = torch.rand(batch, c, size, size, generator=torch.Generator().manual_seed(1))
        labels = torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(2))

        def forward():
            with torch.no_grad():
                return model((x0 - mean_t) / std_t)

        def gradient():
            x = x0.clone().requires_grad_(True)
            loss = F.cross_entropy(model((x - mean_t) / std_t), labels, reduction="none")
            (g,) = torch.autograd.grad(loss.sum(), x)
            return g

        repeats = args.repeats if batch * size * size < 8 * 224 * 224 else max(3, args.repeats // 3)
        f_med, f_min, f_cpu = timed(forward, repeats, args.warmup)
        g_med, g_min, g_cpu = timed(gradient, repeats, args.warmup)
        print(json.dumps({"model": args.model, "batch": batch, "threads": args.threads, "torch": torch.__version__,
                          "forward_ms": round(f_med, 3), "gradient_ms": round(g_med, 3),
                          "gradient_over_forward": round(g_med / f_med, 3), "forward_min_ms": round(f_min, 3),
                          "gradient_min_ms": round(g_min, 3), "forward_cpu_ms": round(f_cpu, 3),
                          "gradient_cpu_ms": round(g_cpu, 3)}))


if __name__ == "__main__":
    main()
