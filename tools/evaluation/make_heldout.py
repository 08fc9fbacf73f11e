#!/usr/bin/python3
"""Write the Fashion-MNIST test images that are neither reported nor used for tuning, as gzipped IDX files.

samples/fashion-mnist holds the reported images (t10k 0..999) and the tuning images (t10k 5000..5499). The other
8,500 test images (t10k 1000..4999 and 5500..9999) are held out from both: evaluating the defense on them measures its
clean-accuracy cost with a standard error near 0.1 point, where 500 images give about 1.3.

--part a writes t10k 1000..4999 only (4,000 images; since session 8 the clean-cost constraint of the defaults' rule is
measured there), --part b t10k 5500..9999 only (4,500 images; still never chosen on), --part all both (the default).

Usage (from the repository root; Debian's dataset-fashion-mnist package provides the source):
    /usr/bin/python3 tools/evaluation/make_heldout.py [--source /usr/share/datasets/fashion-mnist] [--out /tmp/heldout]
then
    dotnet run --project src/StrapVit.Cli -c Release -- evaluate models/fashion-vit-tiny \
      --images /tmp/heldout/heldout-8500-images-idx3-ubyte.gz --calib samples/fashion-mnist/calib-500-images-idx3-ubyte.gz \
      --count 8500 --sizes 4 --steps 1 --universal-steps 0 --adaptive-count 0 --output /tmp/clean8500
(only the clean rows and the ablation's clean column mean anything there: the 1-step patch is a placeholder).
"""
import argparse
import os

import idx


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", default="/tmp/heldout")
    p.add_argument("--part", choices=["all", "a", "b"], default="all")
    args = p.parse_args()
    images, labels = idx.read_split(args.source, "t10k", (10000, 28, 28))
    keep = {"all": list(range(1000, 5000)) + list(range(5500, 10000)), "a": list(range(1000, 5000)), "b": list(range(5500, 10000))}[args.part]
    os.makedirs(args.out, exist_ok=True)
    name = f"heldout-{len(keep)}" if args.part == "all" else f"heldout-{args.part}-{len(keep)}"
    idx.write_entries(images, labels, keep, os.path.join(args.out, name))
    print(f"wrote {len(keep)} images to {args.out}/{name}-*")


if __name__ == "__main__":
    main()
