"""Gzipped IDX files (Fashion-MNIST's format, and samples/fashion-mnist's), with the standard library only.

`strapvit evaluate --images` reads an images file and the labels file next to it (`-images-idx3-ubyte` ->
`-labels-idx1-ubyte`); `write_entries` writes such a pair from chosen entries of another one.
"""
from __future__ import annotations

import gzip
import os
import struct

IMAGES = 2051
LABELS = 2049


def read(path: str, magic: int) -> tuple[bytes, tuple[int, ...]]:
    """The file's bytes (header included) and its shape (count first); refuses a file of another kind."""
    with gzip.open(path) if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    if struct.unpack(">I", data[:4])[0] != magic:
        raise SystemExit(f"{path}: not an IDX file of the expected kind")
    dims = magic & 0xFF
    return data, struct.unpack(f">{dims}I", data[4:4 + 4 * dims])


def read_split(folder: str, split: str, shape: tuple[int, ...]) -> tuple[bytes, bytes]:
    """The images and labels (as `read` returns them) of one of Fashion-MNIST's original files, `split` "train" or
    "t10k", in `folder` (Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist); refuses other shapes."""
    images, found = read(os.path.join(folder, f"{split}-images-idx3-ubyte.gz"), IMAGES)
    labels, _ = read(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz"), LABELS)
    if found != shape:
        raise SystemExit(f"{folder}: {split} images have shape {found}, not Fashion-MNIST's {shape}")
    return images, labels


def labels_path(images_path: str) -> str:
    return images_path.replace("-images-idx3-ubyte", "-labels-idx1-ubyte")


def write_entries(images: bytes, labels: bytes, entries: list[int], prefix: str) -> None:
    """Writes entries (in the order given) of the 28x28-style images and their labels (both as `read` returns them,
    header included) to PREFIX-images-idx3-ubyte.gz and PREFIX-labels-idx1-ubyte.gz. mtime 0 and no file name in the
    gzip header: the same bytes on every run."""
    rows, cols = struct.unpack(">II", images[8:16])
    size = rows * cols
    with open(f"{prefix}-images-idx3-ubyte.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(struct.pack(">IIII", IMAGES, len(entries), rows, cols))
        f.write(b"".join(images[16 + i * size:16 + (i + 1) * size] for i in entries))
    with open(f"{prefix}-labels-idx1-ubyte.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(struct.pack(">II", LABELS, len(entries)))
        f.write(bytes(labels[8 + i] for i in entries))
