#!/usr/bin/python3
"""Write the first N Fashion-MNIST training images (train 0..N-1) as gzipped IDX files: a larger clean calibration set.

samples/fashion-mnist/calib-500 is train 0..499, so these hold it as their first 500. The model saw them in training,
as it saw calib-500; no test image is among them.

Usage (from the repository root; Debian's dataset-fashion-mnist package provides the source):
    /usr/bin/python3 tools/evaluation/make_calibration.py --count 4000 [--source /usr/share/datasets/fashion-mnist] [--out /tmp/calib]
then
    dotnet run --project src/StrapVit.Cli -c Release -- calibrate models/fashion-vit-tiny --idx /tmp/calib/calib-4000-images-idx3-ubyte.gz \
      --check-idx samples/fashion-mnist/tune-500-images-idx3-ubyte.gz --check-rate 0.01 --output <file>
"""
import argparse
import os

import idx


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--out", default="/tmp/calib")
    p.add_argument("--count", type=int, default=4000)
    args = p.parse_args()
    images, labels = idx.read_split(args.source, "train", (60000, 28, 28))
    assert 0 < args.count <= 60000
    os.makedirs(args.out, exist_ok=True)
    name = f"calib-{args.count}"
    idx.write_entries(images, labels, list(range(args.count)), os.path.join(args.out, name))
    print(f"wrote {args.count} images to {args.out}/{name}-*")


if __name__ == "__main__":
    main()
