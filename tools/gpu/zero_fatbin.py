#!/usr/bin/env python3
"""Zero the GPU code for other architectures in a CUDA library, so it compresses small enough to carry.

Usage: tools/gpu/zero_fatbin.py SRC DST [SM]   (SM: the compute capability to keep, default 90 for Hopper)

ONNX Runtime's CUDA provider ships machine code (cubin) for several GPU architectures in its .nv_fatbin section. A GPU
of compute capability SM loads cubin of its own major version and a minor version up to its own (sm_86 runs sm_80
code); every other cubin is overwritten with zeros (the file keeps its size and layout), which compresses to almost
nothing. PTX entries (kind 1) are kept. Prints the bytes per (kind, sm) and what was zeroed; exits non-zero, writing
nothing, if the section does not parse or no cubin for SM is left.
"""
import collections
import struct
import subprocess
import sys

FATBIN_MAGIC = 0xBA55ED50
CONTAINER_HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of the entries
ENTRY_HEADER = struct.Struct("<HHIQ")      # kind, version, header size, padded payload size; the sm at offset 28
PTX, CUBIN = 1, 2


def section(path, name):
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "]" not in line:
            continue
        fields = line.split("]", 1)[1].split()
        if fields and fields[0] == name:
            return int(fields[3], 16), int(fields[4], 16)  # file offset, size
    raise SystemExit(f"{path}: no {name} section")


def runs_on(sm, keep):
    return sm // 10 == keep // 10 and sm % 10 <= keep % 10


def main():
    src, dst = sys.argv[1], sys.argv[2]
    keep = int(sys.argv[3]) if len(sys.argv) > 3 else 90
    data = bytearray(open(src, "rb").read())
    size_before = len(data)
    start, size = section(src, ".nv_fatbin")
    end = start + size
    if end > len(data):
        raise SystemExit(f"{src}: .nv_fatbin runs past the end of the file")
    per_arch, zeroed, containers, pos = collections.Counter(), 0, 0, start
    while pos + CONTAINER_HEADER.size <= end:
        magic, _, header, fat = CONTAINER_HEADER.unpack_from(data, pos)
        if magic != FATBIN_MAGIC:
            pos += 8  # containers are 8-byte aligned; skip padding
            continue
        stop = pos + header + fat
        if header != CONTAINER_HEADER.size or stop > end:
            raise SystemExit(f"{src}: fatbin container at {pos:#x} does not parse (header {header}, size {fat})")
        containers += 1
        entry = pos + header
        while entry < stop:
            kind, _, entry_header, payload = ENTRY_HEADER.unpack_from(data, entry)
            sm = struct.unpack_from("<I", data, entry + 28)[0]
            if kind not in (PTX, CUBIN) or entry_header < 32 or entry + entry_header + payload > stop:
                raise SystemExit(f"{src}: fatbin entry at {entry:#x} does not parse (kind {kind}, header {entry_header}, size {payload})")
            per_arch[(kind, sm)] += payload
            if kind == CUBIN and not runs_on(sm, keep):
                data[entry + entry_header:entry + entry_header + payload] = bytes(payload)
                zeroed += payload
            entry += entry_header + payload
        pos = stop
    for (kind, sm), n in sorted(per_arch.items()):
        print(f"{'cubin' if kind == CUBIN else 'ptx'} sm_{sm}: {n / 2**20:.1f} MiB")
    if containers == 0 or not any(kind == CUBIN and runs_on(sm, keep) for kind, sm in per_arch):
        raise SystemExit(f"{src}: no cubin for sm_{keep} found in {containers} fatbin containers; nothing written")
    assert len(data) == size_before
    print(f"zeroed {zeroed / 2**20:.1f} MiB of cubin that sm_{keep} cannot run, in {containers} containers")
    open(dst, "wb").write(data)


if __name__ == "__main__":
    main()
