#!/usr/bin/python3
"""Render models/fashion-vit-tiny/MODEL_CARD.md from metrics.json and model.json (written by training).

    /usr/bin/python3 tools/model/write_model_card.py [--model models/fashion-vit-tiny] [--notes FILE]
"""
from __future__ import annotations

import argparse
import json
import os


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/fashion-vit-tiny")
    ap.add_argument("--notes", default=None, help="markdown appended under 'Training notes'")
    ap.add_argument("--quiet-epoch-seconds", type=float, default=None,
                    help="seconds per epoch measured by --time-batches on an otherwise idle machine")
    args = ap.parse_args()
    with open(os.path.join(args.model, "metrics.json")) as f:
        mt = json.load(f)
    with open(os.path.join(args.model, "model.json")) as f:
        mj = json.load(f)
    a = mt["args"]
    dim, depth, heads, mlp = a["dim"], a["depth"], a["heads"], a["mlp_ratio"]
    hidden = int(dim * mlp)
    stem = a.get("stem_channels", 0)
    if stem:
        embed_text = (f"- Convolutional stem: `Conv2d(1, {stem}, kernel 3, stride 1, padding 1)` + exact GELU, then the patch\n"
                      f"  embedding `Conv2d({stem}, {dim}, kernel 4, stride 4)` -> 7x7 = 49 patch tokens of width {dim}. Each token\n"
                      "  sees its own 4x4 patch plus a 1-pixel border (a 6x6 receptive field centred on the patch), so a token\n"
                      "  still stands for its patch, as the patch defense and the heatmaps assume. It is a minimal form of the\n"
                      "  convolutional stem of \"Early convolutions help transformers see better\" (Xiao et al., 2021); without\n"
                      "  it the same ViT reached 88.26% in 15 epochs (see the training notes).")
    else:
        embed_text = f"- Patch embedding: `Conv2d(1, {dim}, kernel 4, stride 4)` -> 7x7 = 49 patch tokens of width {dim}."
    minutes = mt["train_seconds"] / 60
    per_class = "\n".join(f"| {i} | {k} | {v * 100:.1f}% |" for i, (k, v) in enumerate(mt["per_class_accuracy"].items()))
    mon_key = next(k for k in mt["history"][0] if k.startswith("test_acc"))
    mon_label = "Test acc, first " + mon_key.rsplit("_", 1)[1] if mon_key != "test_acc" else "Test acc"
    hist = "\n".join(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_acc'] * 100:.1f}% | {h[mon_key] * 100:.2f}% | "
                     f"{h['epoch_seconds']:.0f} |" for h in mt["history"])
    args_monitor = a.get("monitor_images", 10000)
    aug_text = {"none": "none", "flip": "random horizontal flip (p = 0.5)",
                "flipcrop": "random horizontal flip and a random 28x28 crop of the image zero-padded by 2 px"}[a["aug"]]
    ls_text = (f"- Label smoothing {a['label_smoothing']} in training caps confident probabilities; do not read softmax\n"
               "  values as calibrated probabilities.\n") if a["label_smoothing"] else (
        "- Softmax outputs are not calibrated probabilities (no calibration was done).\n")
    timing_text = ""
    if args.quiet_epoch_seconds:
        timing_text = (f" A timing run\n  (`--time-batches`) on the idle machine measured about {args.quiet_epoch_seconds:.0f} s per epoch for this"
                       " configuration;\n  the per-epoch times below include whatever else ran on the machine.")
    notes = ""
    if args.notes:
        with open(args.notes) as f:
            notes = f.read().strip() + "\n"
    card = f"""# fashion-vit-tiny

The default model that StrapVitService embeds: a small Vision Transformer trained from scratch on Fashion-MNIST.

| | |
|---|---|
| Task | 10-class image classification of 28x28 grayscale Fashion-MNIST images |
| Test accuracy | **{mt['test_accuracy_10000'] * 100:.2f}%** on all 10,000 Fashion-MNIST test images ({mt['test_correct_10000']} correct) |
| Test accuracy, first 1000 | {mt['test_accuracy_first_1000'] * 100:.1f}% ({mt['test_correct_first_1000']} / 1000; the set in `samples/fashion-mnist/test-1000-*`) |
| Parameters | {mt['params']:,} |
| File | `model.onnx`, {mt['onnx_bytes']:,} bytes, ONNX opset {mt['opset']}, float32 |
| Input | `{mj['input']['name']}` float32 `[N, 1, 28, 28]`, N dynamic, **already normalised**: `(x - {mj['input']['mean'][0]}) / {mj['input']['std'][0]}` with x in [0, 1] |
| Output | `{mj['output']}` float32 `[N, 10]` (raw logits; softmax gives probabilities) |
| Tokens tensor | `{mt['tokens_tensor']}`, shape `[N, {mt['tokens_shape'][1]}, {mt['tokens_shape'][2]}]` (class token + 49 patch tokens, after position embedding) |

The service applies the normalisation itself (it prepends it to the graph, see README, 'Using the API'), so clients
send [0, 1] pixels / ordinary images; anyone running `model.onnx` directly must normalise first.

## Architecture

{embed_text}
- Learned class token prepended, learned position embedding `[1, 50, {dim}]` added (this Add's output is the
  tokens tensor `{mt['tokens_tensor']}`; found by inspecting the exported graph for the Add that consumes the
  position-embedding initializer, shape checked with a torch forward hook and ONNX shape inference).
- {depth} pre-norm transformer blocks: `x + MHSA(LayerNorm(x))`, `x + MLP(LayerNorm(x))`; {heads} heads of width
  {dim // heads}; attention written with plain MatMul / Softmax; MLP {dim} -> {hidden} -> {dim} with exact GELU
  (exported via Erf). No dropout.
- Final LayerNorm, linear head `{dim} -> 10` on the class token.
- ONNX ops: {', '.join(mt['onnx_ops'])} (domain ai.onnx only).

## Training

- Data: Fashion-MNIST from Debian `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`), 60,000 training
  images; the 10,000 test images are used only for evaluation (the per-epoch accuracy below, on the first
  {args_monitor} test images, was logged for monitoring only; the exported model is the last epoch, no checkpoint
  selection).
- Pixels scaled to [0, 1], normalised with mean 0.286, std 0.353. Augmentation: {aug_text}.
- AdamW (betas 0.9/0.999, weight decay {a['weight_decay']} on weight matrices only), peak lr {a['lr']}, linear
  warmup {a['warmup_epochs']} epoch then cosine decay to 0, batch {a['batch_size']} (last partial batch dropped),
  label smoothing {a['label_smoothing']}, gradient-norm clipping 1.0, {a['epochs']} epochs.
- Seed {a['seed']}: `torch.manual_seed`, plus one `torch.Generator` seeded with it for data order and augmentation.
- Exact command (repository root, Debian 12, torch {mt['torch']}, onnx {mt['onnx']}):

```sh
{mt['command']}
```

- Wall time: **{mt['train_seconds']:.0f} s ({minutes:.1f} min)** for the {a['epochs']} epochs on the 2-core CPU
  development machine with {a['threads']} torch threads and `OPENBLAS_NUM_THREADS=1` (the script sets it).{timing_text}

| Epoch | Train loss | Train acc (augmented) | {mon_label} | Seconds |
|---|---|---|---|---|
{hist}

{notes}
## Evaluation

Accuracy of the exported model's float32 torch twin (eval mode) on all 10,000 test images:
**{mt['test_accuracy_10000'] * 100:.2f}%**. Per class:

| Class | Label | Accuracy |
|---|---|---|
{per_class}

The exported `model.onnx` was checked with `onnx.checker` (full check) and run on 256 test images by a numpy
reference evaluator of its ops (onnxruntime is not available for Debian's Python here): max |logit difference|
to torch {mt['onnx_check']['max_abs_logit_diff']:.1e}, identical argmax; batch 1 and batch 256 both run.

## Intended use and limitations

- For demonstrating and testing StrapVitService (classification, gradients, attacks, the patch defense). Not a
  production classifier.
- Inputs must look like Fashion-MNIST: 28x28 grayscale, centred light garment on a black background. Anything else
  (photos, colour images, other sizes, inverted colours) is resized/converted by the service but will be
  classified unreliably: the model knows only these 10 classes and always answers one of them.
- Weakest classes are the visually similar upper-body garments (Shirt, T-shirt/top, Pullover, Coat).
- Trained without any adversarial training: small adversarial perturbations and patches fool it easily, which is
  what the service's defense is for.
{ls_text}
## Files

- `model.onnx`: the forward graph. `model.json`: the package descriptor (README, 'Bring your own ViT').
- `metrics.json`: training and evaluation numbers this card is rendered from
  (`tools/model/write_model_card.py`).
"""
    with open(os.path.join(args.model, "MODEL_CARD.md"), "w") as f:
        f.write(card)


if __name__ == "__main__":
    main()
