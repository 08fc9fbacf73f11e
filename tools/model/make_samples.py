#!/usr/bin/python3
"""Write the sample files that ship with the repository (run after training the default model).

    /usr/bin/python3 tools/model/make_samples.py [--model models/fashion-vit-tiny] [--out samples]

samples/fashion-mnist/test-1000-{images-idx3,labels-idx1}-ubyte.gz : t10k test images 0..999, in order
samples/fashion-mnist/calib-500-{images-idx3,labels-idx1}-ubyte.gz : train images 0..499, in order
samples/fashion-mnist/tune-500-{images-idx3,labels-idx1}-ubyte.gz : t10k test images 5000..5499, in order
samples/<class>.png   : 8-bit grayscale 28x28 test images the model classifies correctly
samples/trouser-rgb-112.jpg : the trouser PNG as 3-channel RGB, upscaled to 112x112 (bicubic)
samples/README.md, samples/fashion-mnist/README.md

Predictions come from the exported model.onnx (run by vitlib's numpy evaluator, normalisation applied
here exactly as the service does: (x/255 - mean) / std), not from the torch module.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vitlib  # noqa: E402

PNG_CLASSES = [("trouser", 1), ("pullover", 2), ("sneaker", 7), ("bag", 8), ("ankle-boot", 9)]
MIN_PROB = 0.8  # a sample must be classified confidently (and stay so after PNG/JPEG re-encodings)
TUNE = slice(5000, 5500)  # held-out test images for choosing defense defaults, disjoint from test-1000


class Classifier:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "model.json")) as f:
            self.meta = json.load(f)
        self.runner = vitlib.OnnxNumpyRunner(onnx.load(os.path.join(model_dir, "model.onnx")))
        self.mean = np.float32(self.meta["input"]["mean"][0])
        self.std = np.float32(self.meta["input"]["std"][0])

    def probs(self, u8: np.ndarray) -> np.ndarray:
        """u8: [N,28,28] uint8 -> softmax probabilities [N,10]."""
        out = []
        for i in range(0, len(u8), 250):
            x = (u8[i:i + 250].astype(np.float32) / np.float32(255.0))[:, None]
            x = (x - self.mean) / self.std
            logits = self.runner.run({self.meta["input"]["name"]: x.astype(np.float32)})[self.meta["output"]]
            e = np.exp(logits - logits.max(1, keepdims=True))
            out.append(e / e.sum(1, keepdims=True))
        return np.concatenate(out)


def to_gray_u8(img: Image.Image, resample) -> np.ndarray:
    return np.asarray(img.convert("L").resize((28, 28), resample), dtype=np.uint8)


def jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert(img.mode)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/fashion-vit-tiny")
    ap.add_argument("--out", default="samples")
    ap.add_argument("--data-dir", default=vitlib.FASHION_DIR)
    ap.add_argument("--min-prob", type=float, default=MIN_PROB)
    args = ap.parse_args()
    torch.set_num_threads(2)

    d = args.data_dir
    x_test = vitlib.read_idx_images(os.path.join(d, "t10k-images-idx3-ubyte.gz"))
    y_test = vitlib.read_idx_labels(os.path.join(d, "t10k-labels-idx1-ubyte.gz"))
    x_train = vitlib.read_idx_images(os.path.join(d, "train-images-idx3-ubyte.gz"))
    y_train = vitlib.read_idx_labels(os.path.join(d, "train-labels-idx1-ubyte.gz"))

    fm = os.path.join(args.out, "fashion-mnist")
    os.makedirs(fm, exist_ok=True)
    vitlib.write_idx_images(os.path.join(fm, "test-1000-images-idx3-ubyte.gz"), x_test[:1000])
    vitlib.write_idx_labels(os.path.join(fm, "test-1000-labels-idx1-ubyte.gz"), y_test[:1000])
    vitlib.write_idx_images(os.path.join(fm, "calib-500-images-idx3-ubyte.gz"), x_train[:500])
    vitlib.write_idx_labels(os.path.join(fm, "calib-500-labels-idx1-ubyte.gz"), y_train[:500])
    vitlib.write_idx_images(os.path.join(fm, "tune-500-images-idx3-ubyte.gz"), x_test[TUNE])
    vitlib.write_idx_labels(os.path.join(fm, "tune-500-labels-idx1-ubyte.gz"), y_test[TUNE])
    # read back and compare
    for name, xs, ys in (("test-1000", x_test[:1000], y_test[:1000]), ("calib-500", x_train[:500], y_train[:500]),
                         ("tune-500", x_test[TUNE], y_test[TUNE])):
        xi = vitlib.read_idx_images(os.path.join(fm, f"{name}-images-idx3-ubyte.gz"))
        yi = vitlib.read_idx_labels(os.path.join(fm, f"{name}-labels-idx1-ubyte.gz"))
        assert np.array_equal(xi, xs) and np.array_equal(yi, ys), name

    clf = Classifier(args.model)
    p_test = clf.probs(x_test[:1000])
    pred = p_test.argmax(1)
    correct_1000 = int((pred == y_test[:1000]).sum())
    p_cal = clf.probs(x_train[:500])
    correct_cal = int((p_cal.argmax(1) == y_train[:500]).sum())
    correct_tune = int((clf.probs(x_test[TUNE]).argmax(1) == y_test[TUNE]).sum())
    print(f"ONNX model: test-1000 {correct_1000}/1000, calib-500 {correct_cal}/500, tune-500 {correct_tune}/500")
    per_class_1000 = {vitlib.FASHION_LABELS[c]: (int(((pred == c) & (y_test[:1000] == c)).sum()),
                                                 int((y_test[:1000] == c).sum())) for c in range(10)}
    counts_cal = {vitlib.FASHION_LABELS[c]: int((y_train[:500] == c).sum()) for c in range(10)}

    # PNGs: the first test image of each class that the model gets right with probability >= MIN_PROB and
    # that stays right after JPEG re-encoding; the trouser must also survive the RGB 112x112 round trip.
    chosen = []
    for name, cls in PNG_CLASSES:
        for i in range(len(y_test)):
            if y_test[i] != cls:
                continue
            p = clf.probs(x_test[i:i + 1])[0]
            if p.argmax() != cls or p[cls] < args.min_prob:
                continue
            img = Image.fromarray(x_test[i], mode="L")
            variants = [np.asarray(jpeg_roundtrip(img, 90))]
            rot = img.rotate(90, expand=True)
            variants.append(np.asarray(jpeg_roundtrip(rot, 100).rotate(-90, expand=True)))
            rgb112 = None
            if name == "trouser":
                rgb112 = img.convert("RGB").resize((112, 112), Image.BICUBIC)
                rgb112 = jpeg_roundtrip(rgb112, 95)
                for rs in (Image.NEAREST, Image.BILINEAR, Image.BICUBIC, Image.LANCZOS, Image.BOX):
                    variants.append(to_gray_u8(rgb112, rs))
            vp = clf.probs(np.stack(variants))
            if (vp.argmax(1) != cls).any():
                continue
            chosen.append({"file": f"{name}.png", "label": vitlib.FASHION_LABELS[cls], "class": cls,
                           "test_index": i, "prob": float(p[cls]), "min_prob_variants": float(vp[:, cls].min())})
            img.save(os.path.join(args.out, f"{name}.png"), optimize=True)
            if rgb112 is not None:
                rgb112_path = os.path.join(args.out, "trouser-rgb-112.jpg")
                buf = io.BytesIO()
                img.convert("RGB").resize((112, 112), Image.BICUBIC).save(buf, format="JPEG", quality=95)
                with open(rgb112_path, "wb") as f:
                    f.write(buf.getvalue())
                jpg = Image.open(rgb112_path)
                assert jpg.mode == "RGB" and jpg.size == (112, 112)
                chosen[-1]["rgb112"] = "trouser-rgb-112.jpg"
            break
        else:
            raise RuntimeError(f"no suitable test image for {name}")

    # check the written files decode to what we meant
    for c in chosen:
        im = Image.open(os.path.join(args.out, c["file"]))
        assert im.mode == "L" and im.size == (28, 28), (c["file"], im.mode, im.size)
        assert np.array_equal(np.asarray(im), x_test[c["test_index"]])
        print(f"{c['file']}: test index {c['test_index']} {c['label']} p={c['prob']:.4f} "
              f"(min over re-encodings {c['min_prob_variants']:.4f})")

    write_readmes(args, clf, chosen, correct_1000, per_class_1000, correct_cal, counts_cal, correct_tune)


def write_readmes(args, clf, chosen, correct_1000, per_class_1000, correct_cal, counts_cal, correct_tune):
    rows = "\n".join(f"| `{c['file']}` | {c['label']} | {c['test_index']} | {c['prob']:.4f} |" for c in chosen)
    trouser = next(c for c in chosen if c["class"] == 1)
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(f"""# Samples

Test images for the README's `curl` examples and the API tests. Every PNG is an unmodified image from the
Fashion-MNIST **test** set (`/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz`, Debian package
`dataset-fashion-mnist`; index = 0-based position in that file), saved as an 8-bit grayscale 28x28 PNG.
Each is classified correctly by the default model `{clf.meta['name']}` (probability below, from the exported
`model.onnx` with the service's normalisation).

| File | Label | Test index | p(label) |
|---|---|---|---|
{rows}
| `trouser-rgb-112.jpg` | Trouser | {trouser['test_index']} | (same image) |

`trouser-rgb-112.jpg` is `trouser.png` converted to 3-channel RGB (R = G = B) and upscaled to 112x112 with
bicubic resampling (Pillow), saved as baseline JPEG quality 95: it exercises channel conversion and resizing.
The images were chosen as the first of their class (by test index) that the model gets right with probability
>= {args.min_prob}, and that stay right after JPEG re-encoding, after a rotate / JPEG / rotate-back round trip and
(for the trouser) after downscaling the 112x112 JPEG back to 28x28 with nearest, bilinear, bicubic, Lanczos
or box filtering.

`fashion-mnist/` holds the compact labelled sets (gzipped IDX), see [its README](fashion-mnist/README.md).

Generated by `/usr/bin/python3 tools/model/make_samples.py` (deterministic; run after training the model).
""")
    per_class_rows = "\n".join(f"| {k} | {v[1]} | {v[0]} |" for k, v in per_class_1000.items())
    cal_rows = ", ".join(f"{k} {v}" for k, v in counts_cal.items())
    with open(os.path.join(args.out, "fashion-mnist", "README.md"), "w") as f:
        f.write(f"""# Fashion-MNIST subsets

Source: Debian package `dataset-fashion-mnist`, files in `/usr/share/datasets/fashion-mnist/`
(the original Fashion-MNIST release, Zalando Research, MIT licence). Same gzipped IDX layout as the originals
(big-endian; images: magic 2051, count, rows 28, cols 28, then count*28*28 unsigned bytes, row-major;
labels: magic 2049, count, then one byte per image, 0..9), so `GZipStream` + the IDX reader read them.
Both gzip streams are written with mtime 0 and no file name, so regenerating gives identical bytes.

| Files | Images | Source indices (0-based) | Use |
|---|---|---|---|
| `test-1000-images-idx3-ubyte.gz`, `test-1000-labels-idx1-ubyte.gz` | 1000 | `t10k` test set 0..999, in order | tests, evaluation, reported accuracy |
| `calib-500-images-idx3-ubyte.gz`, `calib-500-labels-idx1-ubyte.gz` | 500 | `train` set 0..499, in order | the defense's clean reference (calibration), universal-patch training |
| `tune-500-images-idx3-ubyte.gz`, `tune-500-labels-idx1-ubyte.gz` | 500 | `t10k` test set 5000..5499, in order | choosing the defense's defaults (`strapvit evaluate --split tune`) |

Keep the three apart: calibrate on `calib-500`, choose defaults on `tune-500`, report on `test-1000`.
(`calib-500` comes from the training set, so the model has seen these images in training; its accuracy there is not
a generalisation number. `tune-500` is held-out test images, disjoint from `test-1000`.)

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot.

## Accuracy of the default model (`models/{clf.meta['name']}`)

Computed from the exported `model.onnx` in float32 with the service's normalisation
((pixel / 255 - {clf.meta['input']['mean'][0]}) / {clf.meta['input']['std'][0]}), argmax of the logits:

- `test-1000`: **{correct_1000} / 1000 = {correct_1000 / 10:.1f}%**
- `calib-500`: {correct_cal} / 500 = {correct_cal / 5:.1f}% (training images)
- `tune-500`: {correct_tune} / 500 = {correct_tune / 5:.1f}%

A C# evaluation that decodes these bytes, scales to [0, 1] and runs the package should match the test-1000
count exactly or within one or two images (ties between float implementations).

Per class on `test-1000`:

| Class | Images | Correct |
|---|---|---|
{per_class_rows}

Class counts in `calib-500`: {cal_rows}.

Generated by `/usr/bin/python3 tools/model/make_samples.py`.
""")


if __name__ == "__main__":
    main()
