"""Seeded benchmark models shared by export_vit_b16.py (ONNX side) and bench_torch.py (PyTorch side), so that both
sides time exactly the same weights. Run with /usr/bin/python3 (Debian torch 1.13)."""
from __future__ import annotations

import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# name: (channels, size, patch, classes, mean, std)
SPECS = {
    "vit-b16": (3, 224, 16, 1000, IMAGENET_MEAN, IMAGENET_STD),
    # ViT-B/16's sizes in the embedded model's (timm's) layout, whose attention the service fuses (and can key-mask);
    # torchvision's layout keeps standard ops.
    "vit-b16-timm": (3, 224, 16, 1000, IMAGENET_MEAN, IMAGENET_STD),
    "tiny": (1, 28, 4, 10, [0.286], [0.353]),
}


def make(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name == "vit-b16":
        from torchvision.models import vit_b_16

        model = vit_b_16(weights=None)
        with torch.no_grad():  # torchvision zero-initialises the head: all logits would be 0
            nn.init.normal_(model.heads.head.weight, std=0.02)
            nn.init.normal_(model.heads.head.bias, std=0.02)
    elif name == "vit-b16-timm":
        import vitlib

        model = vitlib.ViT(image_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=768, depth=12, heads=12, mlp_ratio=4.0)
        # Biases and norms as a trained model has them, all different. Freshly initialised ones are equal (zeros,
        # ones), and the exporter folds equal tensors into one, shared through Identity nodes (the service's attention
        # fusion looks through those since session 22; before, it fused 1 block of 12 of such an export).
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.dim() == 1:
                    parameter.add_(torch.randn_like(parameter) * 0.02)
    elif name == "tiny":
        import vitlib  # the embedded model's architecture: dim 64, depth 4, heads 4, patch 4, 28x28x1

        model = vitlib.ViT()
    else:
        raise ValueError(name)
    return model.eval()


def probe_input(name: str, batch: int = 2) -> torch.Tensor:
    c, size = SPECS[name][0], SPECS[name][1]
    return torch.rand(batch, c, size, size, generator=torch.Generator().manual_seed(99))
