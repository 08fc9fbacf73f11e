#!/usr/bin/env python3
"""A ViT-B/16 package small enough to carry: the graph without its large weights, refilled on the other machine.

  tools/gpu/timing_package.py strip MODEL.onnx GRAPH.onnx   # here: weights over 100 kB become external references
  tools/gpu/timing_package.py fill GRAPH.onnx MODEL.onnx     # there: each is filled with N(0, 0.02) draws (seed 0)

ViT-B/16's 330 MB of weights exceed what travels to a GPU machine, and that machine's newer PyTorch exports a graph
whose reshapes fix the sequence length (the defense drops tokens). So the graph exported here by
tools/gradients/export_vit_b16.py travels (0.5 MB, biases and norms kept) and random weights are filled in there.
Needs numpy and onnx (here Debian's python3-onnx; the GPU machine's PyTorch install has both). Timing only: the
answers of such a model mean nothing, and it is calibrated there (strapvit calibrate) on its own tokens.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto


def strip(src, dst):
    model = onnx.load(src)
    moved = 0
    for t in model.graph.initializer:
        if len(t.raw_data) > 100_000:
            assert t.data_type == TensorProto.FLOAT, t.name
            n = len(t.raw_data)
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "refilled.bin"), ("offset", "0"), ("length", str(n))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
            moved += n
    onnx.save(model, dst)
    print(f"{dst}: {moved / 2**20:.0f} MiB of weights left out")


def fill(src, dst):
    model = onnx.load(src, load_external_data=False)
    rng = np.random.default_rng(0)
    for t in model.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            t.raw_data = rng.normal(0, 0.02, int(np.prod(t.dims))).astype(np.float32).tobytes()
            t.data_location = TensorProto.DEFAULT
            del t.external_data[:]
    onnx.save(model, dst)


if __name__ == "__main__":
    {"strip": strip, "fill": fill}[sys.argv[1]](sys.argv[2], sys.argv[3])
