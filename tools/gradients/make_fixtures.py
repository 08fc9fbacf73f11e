#!/usr/bin/python3
"""Build the PyTorch-autograd parity fixtures for the C# gradient-graph builder.

Usage (from the repository root, with Debian's torch; NOT the python3 first on PATH):
    /usr/bin/python3 tools/gradients/make_fixtures.py [--out tests/fixtures/gradients] [--only NAME ...]

Every variant is a ViT the service has never seen (other sizes, channel counts, normalizations, opsets, pooling,
GELU forms, attention styles, torchvision's VisionTransformer). Each is written as a model package
(model.onnx + model.json, README, 'Bring your own ViT') plus a float64 autograd reference on the same weights:

    reference.json  batch, shapes, labels, and the byte offset of every array in reference.bin
    reference.bin   little-endian float32 arrays: pixels [B,C,H,W] in [0,1], logits [B,K], loss [B],
                    pixel_grad [B,C,H,W] = d(sum loss)/d pixels, logits_grad [B,K], vjp_grad [B,C,H,W]

The reference applies (x - mean) / std in float64 exactly as the service bakes it into the graph, so the C# tests
compare the full [0,1]-pixel-space gradient. Weights are drawn with larger-than-training scales so that attention
is far from uniform and the gradients are not trivially small.
"""
from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    """Three export shapes of the same maths: fused qkv + permute + index (timm), fused qkv + chunk (Split),
    separate q/k/v projections with a Div by sqrt(d) (Hugging Face)."""

    def __init__(self, dim: int, heads: int, style: str):
        super().__init__()
        self.heads, self.hd, self.style = heads, dim // heads, style
        if style == "separate":
            self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, t):
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.hd).permute(0, 2, 1, 3)

    def forward(self, x):
        b, n, d = x.shape
        if self.style == "fused":
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            att = torch.matmul(q * self.hd ** -0.5, k.transpose(-2, -1))
        elif self.style == "chunk":
            q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))
            att = torch.matmul(q, k.transpose(-2, -1)) * self.hd ** -0.5
        else:
            q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
            att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.hd)
        att = att.softmax(dim=-1)
        out = torch.matmul(att, v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, dim, heads, mlp, act, style, eps):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, style)
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)
        self.act = act

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        h = self.fc1(self.n2(x))
        if self.act == "gelu":
            h = F.gelu(h)
        elif self.act == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:
            h = F.relu(h)
        return x + self.fc2(h)


class SmallViT(nn.Module):
    def __init__(self, c, hw, patch, dim, depth, heads, mlp, classes, pool, act, style, eps):
        super().__init__()
        self.pool = pool
        self.embed = nn.Conv2d(c, dim, kernel_size=patch, stride=patch)
        n = (hw[0] // patch) * (hw[1] // patch) + (1 if pool == "cls" else 0)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.5)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp, act, style, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        if self.pool == "cls":
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos
        for blk in self.blocks:
            x = blk(x)
        if self.pool == "cls":
            return self.head(self.norm(x)[:, 0])
        return self.head(self.norm(x.mean(dim=1)))


def small(c, hw, patch, dim, depth, heads, mlp, classes, pool, act, style, eps=1e-5):
    return lambda: SmallViT(c, hw, patch, dim, depth, heads, mlp, classes, pool, act, style, eps)


def torchvision_vit(representation_size=None):
    def make():
        from torchvision.models.vision_transformer import VisionTransformer

        m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=3, hidden_dim=48, mlp_dim=96,
                              num_classes=6, representation_size=representation_size)
        # torchvision zero-initialises the head (all logits 0) and the class token: re-draw them.
        with torch.no_grad():
            for mod in m.heads.modules():
                if isinstance(mod, nn.Linear):
                    nn.init.normal_(mod.weight, std=0.3)
                    nn.init.normal_(mod.bias, std=0.1)
            m.class_token.normal_(std=0.5)
            m.encoder.pos_embedding.normal_(std=0.5)
        return m

    return make


# name: (factory, channels, (H, W), patch, classes, mean, std, opset, input name, output name)
VARIANTS = {
    "c1_cls_erf_op17": (small(1, (16, 16), 4, 32, 2, 2, 64, 5, "cls", "gelu", "fused"),
                        1, (16, 16), 4, 5, [0.5], [0.25], 17, "input", "logits"),
    "c3_mean_tanh_op14": (small(3, (24, 24), 6, 24, 2, 3, 48, 7, "mean", "gelu_tanh", "chunk"),
                          3, (24, 24), 6, 7, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 14, "image", "scores"),
    "c3_cls_hf_op15": (small(3, (20, 28), 4, 32, 2, 4, 64, 4, "cls", "gelu", "separate", eps=1e-12),
                       3, (20, 28), 4, 4, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 15, "pixels", "logits"),
    "c1_mean_relu_op17": (small(1, (28, 28), 7, 40, 3, 4, 80, 10, "mean", "relu", "chunk"),
                          1, (28, 28), 7, 10, [0.286], [0.353], 17, "input", "output"),
    "torchvision_op17": (torchvision_vit(), 3, (32, 32), 8, 6, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 17,
                         "x", "logits"),
    "torchvision_tanhrep_op14": (torchvision_vit(representation_size=32), 3, (32, 32), 8, 6, [0.2, 0.3, 0.4],
                                 [0.7, 0.6, 0.5], 14, "x", "logits"),
}

BATCH = 2


def export(model, path, example, opset, input_name, output_name):
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, (example,), path, opset_version=opset, input_names=[input_name],
                          output_names=[output_name], dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}},
                          do_constant_folding=True)


def build(name, out_root, seed):
    factory, c, (h, w), patch, k, mean, std, opset, in_name, out_name = VARIANTS[name]
    torch.manual_seed(seed)
    model = factory().float().eval()
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    export(model, os.path.join(out, "model.onnx"), torch.rand(2, c, h, w), opset, in_name, out_name)
    manifest = {
        "name": f"fixture-{name}",
        "input": {"name": in_name, "channels": c, "height": h, "width": w, "mean": mean, "std": std},
        "output": out_name,
        "labels": [f"class{i}" for i in range(k)],
        "patchSize": patch,
    }
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")

    gen = torch.Generator().manual_seed(seed + 1)
    pixels = torch.rand(BATCH, c, h, w, generator=gen)  # float32: exactly what the C# test feeds
    labels = torch.randint(0, k, (BATCH,), generator=gen)
    logits_grad = torch.randn(BATCH, k, generator=gen)

    m64 = model.double()
    mean_t = torch.tensor(mean, dtype=torch.float64).view(1, c, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float64).view(1, c, 1, 1)

    def forward(x):
        return m64((x - mean_t) / std_t)

    x = pixels.double().requires_grad_(True)
    logits = forward(x)
    loss = F.cross_entropy(logits, labels, reduction="none")
    (pixel_grad,) = torch.autograd.grad(loss.sum(), x)
    x2 = pixels.double().requires_grad_(True)
    (vjp_grad,) = torch.autograd.grad(forward(x2), x2, logits_grad.double())

    arrays = {"pixels": pixels, "logits": logits, "loss": loss, "pixel_grad": pixel_grad,
              "logits_grad": logits_grad, "vjp_grad": vjp_grad}
    blob, index = bytearray(), {}
    for key, t in arrays.items():
        a = t.detach().double().numpy().astype("<f4").ravel()
        index[key] = {"offset": len(blob), "count": int(a.size), "shape": list(t.shape)}
        blob += a.tobytes()
    with open(os.path.join(out, "reference.bin"), "wb") as f:
        f.write(bytes(blob))
    meta = {"variant": name, "batch": BATCH, "channels": c, "height": h, "width": w, "classes": k, "opset": opset,
            "labels": [int(v) for v in labels], "arrays": index, "torch": torch.__version__, "seed": seed}
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out, p)) for p in os.listdir(out))
    grad_norm = float(pixel_grad.norm())
    print(f"{name}: {size / 1024:.0f} KB, params {sum(p.numel() for p in model.parameters())}, "
          f"|pixel_grad| {grad_norm:.3e}, loss {loss.detach().numpy().round(3).tolist()}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="tests/fixtures/gradients")
    p.add_argument("--only", nargs="*")
    p.add_argument("--seed", type=int, default=1234)
    args = p.parse_args()
    torch.set_num_threads(2)
    for i, name in enumerate(VARIANTS):
        if not args.only or name in args.only:
            build(name, args.out, args.seed + 17 * i)


if __name__ == "__main__":
    main()
