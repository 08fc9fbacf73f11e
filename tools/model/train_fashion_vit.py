#!/usr/bin/python3
"""Train the embedded default model (fashion-vit-tiny) and write its model package.

Usage (from the repository root, with Debian's torch):
    /usr/bin/python3 tools/model/train_fashion_vit.py --epochs 20 --seed 0 --threads 2 --stem-channels 32

Writes <out>/model.onnx, <out>/model.json (README, 'Bring your own ViT') and <out>/metrics.json.
The exported model takes already-normalised input "input" [N,1,28,28] and returns "logits" [N,10];
the service applies (x - 0.286) / 0.353 to [0,1] pixels itself. Training applies it here.

--time-batches N only measures seconds per batch (and projects seconds per epoch), then exits.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

# Small GEMMs: OpenBLAS's own threads on top of torch's 2 intra-op threads oversubscribe the cores
# (measured ~1.5-2.5x slower per step on the 2-core box). Must be set before numpy/torch load.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vitlib  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="models/fashion-vit-tiny")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mlp-ratio", type=float, default=2.0)
    p.add_argument("--stem-channels", type=int, default=32,
                   help="channels of a 3x3 convolutional stem before the patchify convolution (0 = none)")
    p.add_argument("--stem-kind", choices=["conv3", "local"], default="conv3",
                   help="conv3: 3x3 stride-1 stem (tokens see a 1-pixel border); local: 2x2 stride-2 stem, each "
                        "token sees exactly its own patch (with --stem-channels > 0)")
    p.add_argument("--patch-size", type=int, default=4,
                   help="side of a square patch in pixels (28 must be divisible by it): 4 -> 7x7 = 49 tokens, "
                        "7 -> 4x4 = 16 tokens; written to model.json as patchSize")
    p.add_argument("--name", default="fashion-vit-tiny", help="model name written to model.json")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--aug", choices=["none", "flip", "flipcrop"], default="flip")
    p.add_argument("--data-dir", default=vitlib.FASHION_DIR)
    p.add_argument("--time-batches", type=int, default=0,
                   help="only time this many training batches, print s/epoch, and exit")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--monitor-images", type=int, default=2000,
                   help="per-epoch progress is logged on the first N test images (monitoring only; "
                        "the model is always the last epoch); all 10,000 are evaluated at the end")
    p.add_argument("--init-from", default=None,
                   help="start from this torch state_dict (a --checkpoint file) or from the initializers of a "
                        "model.onnx exported by this script (*.onnx; checked against the file's own logits) instead "
                        "of random weights: a second warm-restart cycle of the same schedule (fresh optimizer, "
                        "warmup, cosine). With an .onnx file the new export must have the same graph structure.")
    p.add_argument("--mask-windows", default=None,
                   help="training-only token-window masking: comma-separated probabilities of masking 0, 1, 2, ... "
                        "random square windows of patch tokens per image (e.g. 0.34,0.33,0.33). Masked tokens are "
                        "excluded as attention keys (-inf logits; the class token never), which at the class token "
                        "equals dropping them from the sequence. The exported graph is unchanged.")
    p.add_argument("--mask-sides", default="3,4", help="window sides in tokens, drawn uniformly (with --mask-windows)")
    p.add_argument("--mask-overhang", type=int, default=1,
                   help="window corners are drawn in [-overhang, grid - side + overhang], windows clipped to the grid")
    p.add_argument("--eval-masked", action="store_true",
                   help="also report accuracy with dropped token windows before and after training "
                        "(on by default with --mask-windows)")
    p.add_argument("--eval-window", type=int, default=4, help="window side (tokens) for --eval-masked")
    p.add_argument("--skip-eval-before", action="store_true",
                   help="with --init-from: skip the masked/clean evaluation of the initial weights (saves time "
                        "when the starting model has already been evaluated)")
    p.add_argument("--eval-single-images", type=int, default=1000,
                   help="first N test images for the exhaustive single-window evaluation")
    p.add_argument("--eval-pair-images", type=int, default=200,
                   help="first N test images for the exhaustive two-window evaluation")
    p.add_argument("--teacher", default=None,
                   help="model.onnx of a trained fashion-vit (3x3 stem of --teacher-stem-channels) to distil from: the "
                        "student, masked or not, learns the teacher's softened answer on the whole image beside the label")
    p.add_argument("--teacher-stem-channels", type=int, default=32)
    p.add_argument("--teacher-stem-kind", choices=["conv3", "local"], default="conv3")
    p.add_argument("--defense-flags", default=None,
                   help="defense-aware training: a file of the tokens the service's patch defense flags on each "
                        "training image (`strapvit defense-flags`: per image two patch-grid bitmasks of "
                        "ceil(P/64) little-endian uint64 words each, the image's and its mirror image's); with probability --defense-flag-prob an "
                        "image's flagged tokens are hidden too (on top of --mask-windows)")
    p.add_argument("--defense-flag-prob", type=float, default=0.5)
    p.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the distillation term (with --teacher)")
    p.add_argument("--distill-temperature", type=float, default=2.0)
    p.add_argument("--checkpoint", default="tools/model/out/fashion-vit-tiny.pt",
                   help="torch state_dict written after every epoch (git-ignored folder)")
    return p.parse_args()


def load_split(data_dir, split):
    x = vitlib.read_idx_images(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    y = vitlib.read_idx_labels(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def normalise(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,28,28] -> normalised float [B,1,28,28]."""
    x = x_u8.float().div_(255.0).unsqueeze(1)
    return (x - vitlib.FASHION_MEAN) / vitlib.FASHION_STD


def augment(x_u8: torch.Tensor, mode: str, gen: torch.Generator, flips=None) -> torch.Tensor:
    """Random horizontal flip and random 28x28 crop from a 2-px zero-padded image (uint8 in, uint8 out).
    ``flips`` (a list, optional) receives the bool [B] flip decisions."""
    if mode == "none":
        if flips is not None:
            flips.append(torch.zeros(x_u8.shape[0], dtype=torch.bool))
        return x_u8
    b = x_u8.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    if flips is not None:
        flips.append(flip)
    x = torch.where(flip[:, None, None], x_u8.flip(-1), x_u8)
    if mode == "flipcrop":
        pad = 2
        xp = F.pad(x, (pad, pad, pad, pad))  # zero = black background
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        ar = torch.arange(28)
        rows = (oy[:, None] + ar)[:, :, None]  # [B,28,1]
        cols = (ox[:, None] + ar)[:, None, :]  # [B,1,28]
        x = xp[torch.arange(b)[:, None, None], rows, cols]
    return x


@torch.no_grad()
def evaluate(model, x_u8, y, batch=1000, key_mask=None):
    """Predictions; key_mask (bool [N, P], optional) drops those patch tokens per image."""
    model.eval()
    preds = []
    for i in range(0, x_u8.shape[0], batch):
        km = None if key_mask is None else key_mask[i:i + batch]
        preds.append(model(normalise(x_u8[i:i + batch]), km).argmax(1))
    return torch.cat(preds)


def grid_windows(grid, side):
    """All side x side windows fully inside the grid (stride 1), as bool [W, grid*grid]."""
    out = []
    for r in range(grid - side + 1):
        for c in range(grid - side + 1):
            m = torch.zeros(grid, grid, dtype=torch.bool)
            m[r:r + side, c:c + side] = True
            out.append(m.reshape(-1))
    return torch.stack(out)


@torch.no_grad()
def masked_report(model, x_test, y_test, args, label):
    """Accuracy with dropped token windows (all of it deterministic: fixed seed 1234 for the random windows).

    - random_1 / random_2: 1 or 2 random windows (side --eval-window, fully inside the grid, may overlap) per
      image, on all 10,000 test images;
    - single_all: each of the W stride-1 windows in turn on the first --eval-single-images images: mean accuracy
      over windows and the fraction of images classified correctly under every window;
    - pairs_all: every unordered pair of those windows (and each window alone) on the first --eval-pair-images
      images: the fraction correct under every combination (PatchCleanser's double-masking condition for this
      window set) and the mean accuracy.
    """
    t0 = time.time()
    grid = int(round(math.sqrt(model.num_patches)))
    side = args.eval_window
    n = x_test.shape[0]
    out = {"window_side": side, "grid": grid}
    for k in (1, 2):
        gen = torch.Generator().manual_seed(1234 + k)
        km = vitlib.fixed_window_mask(n, grid, k, side, gen)
        acc = (evaluate(model, x_test, y_test, key_mask=km) == y_test).float().mean().item()
        out[f"random_{k}_windows_acc_10000"] = acc
    wins = grid_windows(grid, side)
    ns = min(args.eval_single_images, n)
    ok = torch.stack([evaluate(model, x_test[:ns], y_test[:ns], key_mask=w.expand(ns, -1)) == y_test[:ns]
                      for w in wins])                                         # [W, ns]
    out["single_windows"] = int(wins.shape[0])
    out[f"single_mean_acc_first_{ns}"] = ok.float().mean().item()
    out[f"single_all_correct_first_{ns}"] = ok.all(0).float().mean().item()
    npair = min(args.eval_pair_images, n)
    oks = []
    for i in range(wins.shape[0]):
        for j in range(i, wins.shape[0]):
            w = wins[i] | wins[j]
            oks.append(evaluate(model, x_test[:npair], y_test[:npair], key_mask=w.expand(npair, -1)) == y_test[:npair])
    oks = torch.stack(oks)
    out["pair_combinations"] = int(oks.shape[0])
    out[f"pairs_mean_acc_first_{npair}"] = oks.float().mean().item()
    out[f"pairs_all_correct_first_{npair}"] = oks.all(0).float().mean().item()
    out["seconds"] = round(time.time() - t0, 1)
    print(f"MASKED {label}: " + json.dumps(out), flush=True)
    return out


@torch.no_grad()
def check_drop_equivalence(model, x_test):
    """Key masking must equal dropping the tokens at the class token (the service drops them)."""
    model.eval()
    grid = int(round(math.sqrt(model.num_patches)))
    x = normalise(x_test[:16])
    worst = 0.0
    for side, r, c in ((3, 0, 0), (4, 2, 3), (4, 3, 3), (2, 5, 1)):
        m = torch.zeros(grid, grid, dtype=torch.bool)
        m[r:r + side, c:c + side] = True
        m = m.reshape(-1)
        a = model(x, m.expand(x.shape[0], -1))
        b = model.forward_dropped(x, torch.nonzero(~m).squeeze(1))
        worst = max(worst, (a - b).abs().max().item())
    print(f"key masking vs dropping tokens: max |logit diff| {worst:.2e}", flush=True)
    assert worst < 1e-4, worst
    return worst


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    x_train, y_train = load_split(args.data_dir, "train")
    x_test, y_test = load_split(args.data_dir, "t10k")
    print(f"train {tuple(x_train.shape)} test {tuple(x_test.shape)}", flush=True)

    model = vitlib.ViT(image_size=28, patch_size=args.patch_size, in_chans=1, num_classes=10,
                       dim=args.dim, depth=args.depth, heads=args.heads, mlp_ratio=args.mlp_ratio,
                       stem_channels=args.stem_channels, stem_kind=args.stem_kind)
    n_params = vitlib.count_params(model)
    extra = {}
    if args.init_from and args.init_from.endswith(".onnx"):
        mapping = vitlib.load_onnx_weights(model, args.init_from)
        renamed = sum(1 for t, o in mapping if t != o)
        # the loaded module must reproduce the file's own logits (numpy evaluator of the exported graph)
        import onnx

        chk = normalise(x_test[:64])
        got = vitlib.OnnxNumpyRunner(onnx.load(args.init_from)).run({"input": chk.numpy()})["logits"]
        model.eval()
        with torch.no_grad():
            ref = model(chk).numpy()
        diff = float(np.abs(got - ref).max())
        print(f"initialised from {args.init_from}: {len(mapping)} tensors ({renamed} transposed MatMul "
              f"initializers); max |logit diff| torch vs ONNX on 64 test images {diff:.2e}", flush=True)
        assert diff < 1e-4 and (got.argmax(1) == ref.argmax(1)).all()
        extra["init_check"] = {"onnx": os.path.relpath(args.init_from), "images": 64, "max_abs_logit_diff": diff}
    elif args.init_from:
        model.load_state_dict(torch.load(args.init_from))
        print(f"initialised from {args.init_from}", flush=True)
    print(f"params {n_params}", flush=True)
    mask_probs = [float(v) for v in args.mask_windows.split(",")] if args.mask_windows else None
    mask_sides = [int(v) for v in args.mask_sides.split(",")]
    grid = int(round(math.sqrt(model.num_patches)))
    if mask_probs:
        assert abs(sum(mask_probs) - 1.0) < 1e-6, mask_probs
        args.eval_masked = True
    if args.eval_masked and not args.time_batches:
        extra["drop_equivalence_max_abs_logit_diff"] = check_drop_equivalence(model, x_test)
        if args.init_from and not args.skip_eval_before:
            extra["masked_before"] = masked_report(model, x_test, y_test, args, "before")
            pred0 = evaluate(model, x_test, y_test)
            extra["clean_before_acc_10000"] = (pred0 == y_test).float().mean().item()
            print(f"clean test accuracy before (10000): {extra['clean_before_acc_10000']:.4f}", flush=True)

    # No weight decay on biases, LayerNorm weights, cls token and position embedding.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in ("cls_token", "pos_embed") else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.999))

    n = x_train.shape[0]
    steps_per_epoch = n // args.batch_size  # drop the last partial batch
    total_steps = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return args.lr * 0.5 * (1.0 + math.cos(math.pi * t))

    crit = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    teacher = None
    if args.teacher:
        teacher = vitlib.ViT(image_size=28, patch_size=4, in_chans=1, num_classes=10, dim=64, depth=6, heads=4,
                             mlp_ratio=2.0, stem_channels=args.teacher_stem_channels, stem_kind=args.teacher_stem_kind)
        vitlib.load_onnx_weights(teacher, args.teacher)
        teacher.eval()
        for q in teacher.parameters():
            q.requires_grad_(False)
        t_acc = (evaluate(teacher, x_test[:2000], y_test[:2000]) == y_test[:2000]).float().mean().item()
        print(f"teacher {args.teacher}: test acc (first 2000) {t_acc:.4f}", flush=True)
        extra["teacher"] = {"onnx": os.path.relpath(args.teacher), "test_acc_first_2000": t_acc,
                            "alpha": args.distill_alpha, "temperature": args.distill_temperature}
    defense_flags = None
    if args.defense_flags:
        assert args.aug in ("none", "flip"), "defense flags follow flips only, not crops"
        tokens = grid * grid
        words = (tokens + 63) // 64
        raw = np.fromfile(args.defense_flags, dtype="<u8").reshape(-1, 2, words)
        assert raw.shape[0] == x_train.shape[0], (raw.shape, x_train.shape)
        index = np.arange(tokens)
        bits = (raw[:, :, index // 64] >> (index % 64).astype(np.uint64)) & np.uint64(1)
        spare = np.arange(tokens, 64 * words)
        assert not ((raw[:, :, spare // 64] >> (spare % 64).astype(np.uint64)) & np.uint64(1)).any(), \
            "flag bits beyond the grid: the file was written for another model"
        defense_flags = torch.from_numpy(bits.astype(np.bool_))  # [N, 2 (image, mirror), P]
        print(f"defense flags {args.defense_flags}: {defense_flags[:, 0].sum(1).float().mean():.2f} tokens per image, "
              f"hidden with probability {args.defense_flag_prob}", flush=True)
        extra["defense_flags"] = {"file": os.path.basename(args.defense_flags), "probability": args.defense_flag_prob,
                                  "mean_tokens": float(defense_flags[:, 0].sum(1).float().mean())}
    flag_gen = torch.Generator().manual_seed(args.seed + 2000)  # which images hide their flags (own stream)
    gen = torch.Generator().manual_seed(args.seed)  # data order and augmentation
    mask_gen = torch.Generator().manual_seed(args.seed + 1000)  # token windows (own stream: same data order)

    t0 = time.time()
    step = 0
    history = []
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        te = time.time()
        run_loss, run_correct, run_n = 0.0, 0, 0
        for bi in range(steps_per_epoch):
            idx = perm[bi * args.batch_size:(bi + 1) * args.batch_size]
            flips = []
            xb = normalise(augment(x_train[idx], args.aug, gen, flips))
            yb = y_train[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            key_mask = (vitlib.random_window_mask(yb.shape[0], grid, mask_probs, mask_sides, mask_gen,
                                                  args.mask_overhang) if mask_probs else None)
            if defense_flags is not None:
                chosen = torch.rand(yb.shape[0], generator=flag_gen) < args.defense_flag_prob
                flags = defense_flags[idx, flips[0].long()] & chosen[:, None]
                key_mask = flags if key_mask is None else key_mask | flags
            logits = model(xb, key_mask)
            loss = crit(logits, yb)
            if teacher is not None:
                # Hinton et al.'s soft targets, from the teacher's view of the whole (augmented, unmasked) image.
                tau = args.distill_temperature
                with torch.no_grad():
                    soft = F.softmax(teacher(xb) / tau, dim=1)
                kd = F.kl_div(F.log_softmax(logits / tau, dim=1), soft, reduction="batchmean") * tau * tau
                loss = (1.0 - args.distill_alpha) * loss + args.distill_alpha * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            run_loss += loss.item() * yb.shape[0]
            run_correct += (logits.argmax(1) == yb).sum().item()
            run_n += yb.shape[0]
            if args.time_batches and bi + 1 == args.time_batches:
                dt = time.time() - te
                spb = dt / args.time_batches
                print(f"TIMING patch={args.patch_size} stem={args.stem_channels}/{args.stem_kind} dim={args.dim} depth={args.depth} heads={args.heads} mlp={args.mlp_ratio} "
                      f"batch={args.batch_size}: {spb:.4f} s/batch -> {spb * steps_per_epoch:.1f} s/epoch "
                      f"({steps_per_epoch} batches); train acc so far {run_correct / run_n:.4f}", flush=True)
                return
            if (bi + 1) % args.log_every == 0:
                print(f"epoch {epoch + 1} batch {bi + 1}/{steps_per_epoch} loss {run_loss / run_n:.4f} "
                      f"acc {run_correct / run_n:.4f} lr {lr_at(step):.2e} elapsed {time.time() - t0:.0f}s",
                      flush=True)
        ep_time = time.time() - te
        k = args.monitor_images
        pred = evaluate(model, x_test[:k], y_test[:k])
        test_acc = (pred == y_test[:k]).float().mean().item()
        history.append({"epoch": epoch + 1, "train_loss": run_loss / run_n, "train_acc": run_correct / run_n,
                        f"test_acc_first_{k}": test_acc, "epoch_seconds": ep_time})
        masked_text = ""
        if mask_probs:
            km = vitlib.fixed_window_mask(k, grid, 1, args.eval_window, torch.Generator().manual_seed(1234 + 1))
            macc = (evaluate(model, x_test[:k], y_test[:k], key_mask=km) == y_test[:k]).float().mean().item()
            history[-1][f"test_acc_1_window_first_{k}"] = macc
            masked_text = f" 1-window({args.eval_window}) {macc:.4f}"
        print(f"EPOCH {epoch + 1}/{args.epochs} train_loss {run_loss / run_n:.4f} train_acc "
              f"{run_correct / run_n:.4f} test_acc(first {k}) {test_acc:.4f}{masked_text} epoch_time {ep_time:.0f}s "
              f"total {time.time() - t0:.0f}s", flush=True)
        if args.checkpoint:
            os.makedirs(os.path.dirname(args.checkpoint), exist_ok=True)
            torch.save(model.state_dict(), args.checkpoint)
    train_seconds = time.time() - t0

    # ---- final evaluation (eval mode, float32, all 10,000 test images) ----
    model.eval()
    pred = evaluate(model, x_test, y_test)
    correct = (pred == y_test)
    test_acc = correct.float().mean().item()
    per_class = {vitlib.FASHION_LABELS[c]: correct[y_test == c].float().mean().item() for c in range(10)}
    subset_acc = correct[:1000].float().mean().item()
    print(f"FINAL test accuracy (10000): {test_acc:.4f}; first 1000: {subset_acc:.4f}", flush=True)
    if args.eval_masked:
        extra["masked_after"] = masked_report(model, x_test, y_test, args, "after")

    export_and_package(model, args, x_test, y_test, pred, {
        "params": n_params,
        "train_seconds": round(train_seconds, 1),
        "test_accuracy_10000": test_acc,
        "test_accuracy_first_1000": subset_acc,
        "test_correct_10000": int(correct.sum().item()),
        "test_correct_first_1000": int(correct[:1000].sum().item()),
        "per_class_accuracy": per_class,
        "history": history,
        **extra,
    })


def graph_structure(m):
    """Everything of an ONNX graph except the initializer values: nodes (op, name, inputs, outputs, attributes),
    graph inputs/outputs, initializer names/shapes/types."""
    g = m.graph
    nodes = [(n.op_type, n.domain, n.name, tuple(n.input), tuple(n.output),
              tuple(sorted(a.SerializeToString() for a in n.attribute))) for n in g.node]
    io = ([i.SerializeToString() for i in g.input], [o.SerializeToString() for o in g.output])
    inits = sorted((i.name, tuple(i.dims), i.data_type) for i in g.initializer)
    return nodes, io, inits, [(o.domain, o.version) for o in m.opset_import]


def export_and_package(model, args, x_test, y_test, torch_pred, metrics):
    import onnx

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "model.onnx")
    example = normalise(x_test[:2])
    vitlib.export_onnx(model, onnx_path, example, "input", "logits")
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m, full_check=True)
    op_types = sorted({n.op_type for n in m.graph.node})
    print(f"exported {onnx_path} ({os.path.getsize(onnx_path)} bytes), ops: {op_types}", flush=True)
    assert os.path.getsize(onnx_path) < 5 * 1024 * 1024

    # tokens tensor: the Add that consumes the position-embedding initializer
    tokens = vitlib.find_tokens_tensor(m, model.pos_embed.detach().numpy())
    inf = vitlib.inferred_shape(m, tokens)
    hook = vitlib.tap_shape(model, example)
    t_expected = model.num_patches + 1
    print(f"tokens tensor {tokens!r}: inferred shape {inf}, torch hook shape {hook}", flush=True)
    assert hook == (2, t_expected, model.dim), hook
    if inf is not None:
        assert list(inf[1:]) == [t_expected, model.dim], inf

    # verify the exported file numerically (onnxruntime if present, else the numpy evaluator)
    check = normalise(x_test[:256])
    with torch.no_grad():
        ref_logits = model(check).numpy()
    try:
        import onnxruntime as ort  # noqa: F401

        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": check.numpy()})[0]
        tok = None
        how = "onnxruntime"
    except ImportError:
        runner = vitlib.OnnxNumpyRunner(m)
        res = runner.run({"input": check.numpy()}, outputs=["logits", tokens])
        got, tok = res["logits"], res[tokens]
        how = "numpy reference evaluator (onnxruntime not installed)"
        assert tok.shape == (256, t_expected, model.dim), tok.shape
        one = runner.run({"input": check[:1].numpy()})["logits"]
        assert np.abs(one - ref_logits[:1]).max() < 1e-4
    diff = float(np.abs(got - ref_logits).max())
    agree = float((got.argmax(1) == torch_pred[:256].numpy()).mean())
    print(f"ONNX check via {how}: max |logit diff| {diff:.2e}, argmax agreement {agree:.4f}", flush=True)
    assert diff < 1e-3 and agree == 1.0

    if args.init_from and args.init_from.endswith(".onnx"):
        same = graph_structure(m) == graph_structure(onnx.load(args.init_from))
        print(f"graph structure identical to {args.init_from}: {same}", flush=True)
        assert same, "the export differs in structure from the model it was initialised from"
        metrics["graph_identical_to_init"] = True

    meta = {
        "name": args.name,
        "input": {"name": "input", "channels": 1, "height": 28, "width": 28,
                  "mean": [vitlib.FASHION_MEAN], "std": [vitlib.FASHION_STD]},
        "output": "logits",
        "labels": vitlib.FASHION_LABELS,
        "patchSize": args.patch_size,
        "tokens": {"tensor": tokens, "classToken": True},
    }
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    metrics.update({
        "command": "/usr/bin/python3 " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "args": vars(args),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "opset": 17,
        "onnx_ops": op_types,
        "onnx_bytes": os.path.getsize(onnx_path),
        "tokens_tensor": tokens,
        "tokens_shape": ["N", t_expected, model.dim],
        "onnx_check": {"method": how, "max_abs_logit_diff": diff, "images": 256},
    })
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
