#!/usr/bin/python3
"""Reference FGSM, PGD and DeepFool in PyTorch, on a small ViT the service has never seen, as parity fixtures for
the C# attacks.

Usage (from the repository root, with Debian's torch; NOT the python3 first on PATH):
    /usr/bin/python3 tools/attacks/make_fixtures.py [--out tests/fixtures/attacks]

Writes <out>/vit-c3-12/ (a model package: model.onnx + model.json, README, 'Bring your own ViT') and <out>/reference.json:
for every case the attack, its parameters, the goal (untargeted label / target per image), the float32 clean
images and the reference adversarial images, successes and norms.

The references run in float64 on the exported weights with the normalization applied exactly as the service
bakes it in, and follow docs/ATTACKS.md: FGSM x + s*eps*sign(g); PGD without random start (fixed steps, Linf
sign steps or L2 g/||g|| steps, projection then clip); DeepFool (L2, candidates from the top logits, overshoot on
the accumulated perturbation, clip to [0, 1] at each iterate).

sign() is discontinuous at 0, so a float32 gradient (the service's) and a float64 one can disagree on a pixel whose
gradient is ~0. Images are therefore drawn until every sign-taking step of every case sees all |g_i| above
MARGIN * max|g| in float64; the fixture records the smallest ratio seen so the test's premise is visible.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

MARGIN = 1e-4
C, H, W, PATCH, K = 3, 12, 12, 4, 5
MEAN, STD = [0.40, 0.45, 0.50], [0.30, 0.25, 0.20]


class Block(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.fc2 = nn.Linear(dim, mlp), nn.Linear(mlp, dim)

    def attn(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.fc2(F.gelu(self.fc1(self.n2(x))))


class TinyViT(nn.Module):
    """Class token, learned positions, two pre-norm blocks (fused qkv, unbind), erf GELU."""

    def __init__(self, dim=24, depth=2, heads=2, mlp=48):
        super().__init__()
        self.embed = nn.Conv2d(C, dim, PATCH, PATCH)
        n = (H // PATCH) * (W // PATCH) + 1
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.5)
        self.blocks = nn.ModuleList([Block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, K)
        with torch.no_grad():
            self.head.weight.mul_(4.0)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x)[:, 0])


class Ref:
    """The model in float64 on [0, 1] pixels, normalization included."""

    def __init__(self, model):
        self.m = model.double().eval()
        self.mean = torch.tensor(MEAN, dtype=torch.float64).view(1, C, 1, 1)
        self.std = torch.tensor(STD, dtype=torch.float64).view(1, C, 1, 1)
        self.min_ratio = 1.0

    def logits(self, x):
        return self.m((x - self.mean) / self.std)

    def ce_grad(self, x, labels):
        x = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(self.logits(x), labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
        return g

    def signed(self, g):
        flat = g.abs().flatten(1)
        self.min_ratio = min(self.min_ratio, float((flat.min(1).values / flat.max(1).values).min()))
        return g.sign()

    def logit_grads(self, x, cot):
        x = x.detach().clone().requires_grad_(True)
        z = self.logits(x)
        (g,) = torch.autograd.grad(z, x, cot)
        return z.detach(), g


def fgsm(ref, x, classes, eps, targeted):
    s = -1.0 if targeted else 1.0
    return (x + s * eps * ref.signed(ref.ce_grad(x, classes))).clamp(0, 1)


def pgd(ref, x0, classes, eps, alpha, steps, norm, targeted):
    s = -1.0 if targeted else 1.0
    x = x0.clone()
    for _ in range(steps):
        g = ref.ce_grad(x, classes)
        if norm == "linf":
            x = x + s * alpha * ref.signed(g)
            x = torch.min(torch.max(x, x0 - eps), x0 + eps)
        else:
            gn = g.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
            x = x + s * alpha * g / gn
            d = x - x0
            dn = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            x = x0 + d * torch.where(dn > eps, eps / dn, torch.ones_like(dn))
        x = x.clamp(0, 1)
    return x


def deepfool(ref, x0, overshoot, max_iter, candidates):
    out, iters = [], []
    for n in range(x0.shape[0]):
        xs = x0[n:n + 1]
        z0 = ref.logits(xs).detach()[0]
        order = torch.argsort(z0, descending=True)[:candidates].tolist()
        o, others = order[0], order[1:]
        r_tot = torch.zeros_like(xs)
        x = xs.clone()
        i = 0
        while i < max_iter:
            cot = torch.zeros(len(others), K, dtype=torch.float64)
            for j, c in enumerate(others):
                cot[j, c], cot[j, o] = 1.0, -1.0
            z, g = ref.logit_grads(x.expand(len(others), -1, -1, -1), cot)
            if int(z[0].argmax()) != o:
                break
            best, best_score = None, float("inf")
            for j, c in enumerate(others):
                f = float(z[0, c] - z[0, o])
                wn = float(g[j].norm())
                if wn > 0 and abs(f) / wn < best_score:
                    best, best_score = (f, g[j:j + 1], wn), abs(f) / wn
            f, w, wn = best
            r_tot = r_tot + (abs(f) + 1e-4) / wn ** 2 * w
            x = (xs + (1 + overshoot) * r_tot).clamp(0, 1)
            i += 1
        out.append(x)
        iters.append(i)
    return torch.cat(out), iters


def f32(t):
    return [float(f"{v:.9g}") for v in t.float().flatten().tolist()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/attacks")
    ap.add_argument("--seed", type=int, default=20261125)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = TinyViT().float().eval()

    pkg = os.path.join(args.out, "vit-c3-12")
    os.makedirs(pkg, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model, (torch.rand(2, C, H, W),), os.path.join(pkg, "model.onnx"), opset_version=17,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, do_constant_folding=True)
    with open(os.path.join(pkg, "model.json"), "w") as f:
        json.dump({"name": "attack-fixture-vit-c3-12",
                   "input": {"name": "image", "channels": C, "height": H, "width": W, "mean": MEAN, "std": STD},
                   "output": "logits", "labels": [f"class{i}" for i in range(K)], "patchSize": PATCH}, f, indent=2)
        f.write("\n")

    ref = Ref(model)
    gen = torch.Generator().manual_seed(args.seed + 1)
    eps, alpha = 8 / 255, 2 / 255
    specs = [
        ("fgsm", {"epsilon": eps}, False),
        ("fgsm", {"epsilon": eps}, True),
        ("pgd", {"epsilon": eps, "stepSize": alpha, "steps": 6, "norm": "linf"}, False),
        ("pgd", {"epsilon": eps, "stepSize": alpha, "steps": 6, "norm": "linf"}, True),
        ("pgd", {"epsilon": 0.5, "stepSize": 0.1, "steps": 6, "norm": "l2"}, False),
    ]
    cases, tries = [], 0
    for attack, params, targeted in specs:
        while True:
            tries += 1
            x = torch.rand(3, C, H, W, generator=gen)  # float32, exactly what the C# test feeds
            x64 = x.double()
            pred = ref.logits(x64).argmax(1)
            classes = (pred + 1 + torch.randint(0, K - 1, (3,), generator=gen)) % K if targeted else pred
            ref.min_ratio = 1.0
            if attack == "fgsm":
                adv = fgsm(ref, x64, classes, params["epsilon"], targeted)
            else:
                adv = pgd(ref, x64, classes, params["epsilon"], params["stepSize"], params["steps"], params["norm"],
                          targeted)
            if ref.min_ratio > MARGIN:
                break
        z = ref.logits(adv).detach()
        ok = (z.argmax(1) == classes) if targeted else (z.argmax(1) != classes)
        cases.append({"attack": attack, "params": params, "targeted": targeted, "classes": classes.tolist(),
                      "minGradientRatio": ref.min_ratio if attack == "fgsm" or params["norm"] == "linf" else None,
                      "images": f32(x), "expected": f32(adv), "success": ok.tolist(),
                      "l2": (adv - x64).flatten(1).norm(dim=1).tolist()})

    x = torch.rand(4, C, H, W, generator=gen)
    params = {"overshoot": 0.02, "maxIterations": 50, "candidates": K}
    adv, iters = deepfool(ref, x.double(), params["overshoot"], params["maxIterations"], params["candidates"])
    z0, z = ref.logits(x.double()).argmax(1), ref.logits(adv).detach().argmax(1)
    cases.append({"attack": "deepfool", "params": params, "targeted": False, "classes": z0.tolist(),
                  "minGradientRatio": None, "images": f32(x), "expected": f32(adv), "success": (z != z0).tolist(),
                  "l2": (adv - x.double()).flatten(1).norm(dim=1).tolist(), "iterations": iters})

    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({"package": "vit-c3-12", "channels": C, "height": H, "width": W, "classes": K,
                   "margin": MARGIN, "cases": cases}, f)
        f.write("\n")
    print(f"{len(cases)} cases after {tries} draws; deepfool iterations {iters}, l2 {cases[-1]['l2']}")


if __name__ == "__main__":
    main()
