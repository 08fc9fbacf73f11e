#!/usr/bin/env python3
"""Zero the GPU code for other architectures in a CUDA library, so it compresses small enough to carry.

Usage: tools/gpu/zero_fatbin.py SRC DST [SM]   (SM: the compute capability to keep, default 90 for Hopper)

ONNX Runtime's CUDA provider ships machine code (cubin) for several GPU architectures in its .nv_fatbin section. On
one known GPU only its own entries are ever loaded; the others are overwritten with zeros (the file keeps its size and
layout), which compresses to almost nothing. PTX entries (kind 1) are kept, so a kernel without code for SM can still
be compiled by the driver. Prints the bytes per (kind, sm) and what was zeroed.
"""
import collections
import struct
import subprocess
import sys

FATBIN_MAGIC = 0xBA55ED50
CUBIN = 2


def section(path, name):
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if name in line:
            fields = line.split("]", 1)[1].split()
            return int(fields[3], 16), int(fields[4], 16)  # file offset, size
    raise SystemExit(f"{path}: no {name} section")


def main():
    src, dst = sys.argv[1], sys.argv[2]
    keep = int(sys.argv[3]) if len(sys.argv) > 3 else 90
    data = bytearray(open(src, "rb").read())
    start, size = section(src, ".nv_fatbin")
    per_arch, zeroed, pos, end = collections.Counter(), 0, start, start + size
    while pos < end:
        magic, _, header, fat = struct.unpack_from("<IHHQ", data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-byte aligned; skip padding
            continue
        entry, stop = pos + header, pos + header + fat
        while entry < stop:
            kind, _, entry_header, payload = struct.unpack_from("<HHII", data, entry)
            sm = struct.unpack_from("<I", data, entry + 28)[0]
            per_arch[(kind, sm)] += payload
            if kind == CUBIN and sm != keep:
                data[entry + entry_header:entry + entry_header + payload] = bytes(payload)
                zeroed += payload
            entry += entry_header + payload
        pos = stop
    for (kind, sm), n in sorted(per_arch.items()):
        print(f"kind {kind} sm_{sm}: {n / 2**20:.1f} MiB")
    print(f"zeroed {zeroed / 2**20:.1f} MiB of cubin for other architectures than sm_{keep}")
    open(dst, "wb").write(data)


if __name__ == "__main__":
    main()
