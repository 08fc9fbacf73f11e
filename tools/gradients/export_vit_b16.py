#!/usr/bin/python3
"""Export the benchmark models as model packages into an ignored folder (never commit them: ViT-B/16 is ~331 MB).

Usage (from the repository root):
    /usr/bin/python3 tools/gradients/export_vit_b16.py [--model vit-b16|vit-b16-timm|tiny] [--out tools/gradients/out/<model>]

Writes model.onnx (opset 17, dynamic batch), model.json (README, 'Bring your own ViT') and reference.json (logits of a
seeded probe input, so bench_torch.py can prove it rebuilt the very same weights).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os

import onnx
import torch

import benchmodels


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vit-b16", choices=sorted(benchmodels.SPECS))
    p.add_argument("--out")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(2)
    out = args.out or os.path.join("tools", "gradients", "out", args.model)
    os.makedirs(out, exist_ok=True)
    c, size, patch, classes, mean, std = benchmodels.SPECS[args.model]
    model = benchmodels.make(args.model, args.seed)
    # Exported with autograd enabled on purpose: under no_grad, nn.MultiheadAttention takes its fused fast path
    # (aten::_native_multi_head_attention), which has no ONNX export.
    torch.onnx.export(model, (torch.rand(1, c, size, size),), os.path.join(out, "model.onnx"), opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, do_constant_folding=True,
                      # The TorchScript exporter names the tokens tensor /encoder/Add_output_0; newer PyTorch defaults to dynamo.
                      **({"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}))
    with torch.no_grad():
        x = benchmodels.probe_input(args.model)
        mean_t = torch.tensor(mean).view(1, c, 1, 1)
        std_t = torch.tensor(std).view(1, c, 1, 1)
        logits = model((x - mean_t) / std_t)
    manifest = {"name": f"bench-{args.model}",
                "input": {"name": "input", "channels": c, "height": size, "width": size, "mean": mean, "std": std},
                "output": "logits", "labels": [f"class{i}" for i in range(classes)], "patchSize": patch,
                # The tokens tensor (README, 'Bring your own ViT'): after the position embedding, class token first.
                "tokens": {"tensor": "/encoder/Add_output_0" if args.model == "vit-b16" else "/Add_output_0", "classToken": True}}
    names = {o for n in onnx.load(os.path.join(out, "model.onnx"), load_external_data=False).graph.node for o in n.output}
    assert manifest["tokens"]["tensor"] in names, f"no tensor {manifest['tokens']['tensor']} in the export"
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"seed": args.seed, "probe_logits": logits[:, :8].tolist()}, f)
    print(f"wrote {out} ({os.path.getsize(os.path.join(out, 'model.onnx')) / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
