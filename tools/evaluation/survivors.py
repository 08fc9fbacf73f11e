#!/usr/bin/env python3
"""Attack only the images every attack so far left right, at a larger budget, and fold the answer back.

The worst case over adaptive attacks counts an image only if every attack left it right, so a stronger attack only
needs to run on those images: the survivors. `write` reads `strapvit evaluate` results (their per-image
`correctImages`) and writes the survivors as an IDX pair that `strapvit evaluate --images` reads, with an index file
naming which entries of the original images they are. `count` takes the results of runs on that IDX and gives the
worst case over the original images: an image counts only if it survived before and every new attack left it right.

    # runs on entries 0-99 and on entries 100-199 of the same IDX file (each run on its own 100 images)
    python3 tools/evaluation/survivors.py write --images samples/fashion-mnist/test-1000-images-idx3-ubyte.gz \\
        --runs 0 RUN_A1/results-report.json RUN_A2/results-report.json --runs 100 RUN_B/results-report.json --out /tmp/surv
    strapvit evaluate ... --images /tmp/surv-images-idx3-ubyte.gz --count <survivors> --adaptive-count <survivors> --output NEW
    python3 tools/evaluation/survivors.py count --part /tmp/surv-index.json NEW/results-report.json \
        --images samples/fashion-mnist/test-1000-images-idx3-ubyte.gz --out /tmp/surv2     # the next round's survivors

With `--certified CERTIFY_JSON SIZE`, `write` and `count` also set the survivors beside certified mode on the same
images: a `strapvit certify-eval` result (its per-image `certifiedImages` at patch side SIZE) on the first `total`
entries of the same IDX file. A certified image keeps its label under any patch of that size, whatever the attack.

With `write --parts 2` the survivors are split into two alike sets (PREFIX-p1-*, PREFIX-p2-*) for two runs side by
side, and `count` takes one `--part INDEX RUN...` per set. `count` also chains rounds: an image counts as right if
some index names it and every `--part` whose index names it left it right, so the first round's index with its runs,
then the next round's parts with theirs, give the worst case over all rounds.

The runs of one group must share the model, images and defense options; as a check that they share the images, the
undefended model under the non-adaptive patch must give the same per-image answers in all of them. The new runs must
use the same model and defense options as the old ones (checked against the index).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import idx
from worst_case import adaptive_masks, defense_key, undefended_plain


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def worst(reports: list[dict]) -> list[bool]:
    masks = [m for r in reports for m in adaptive_masks(r).values()]
    if not masks or len({len(m) for m in masks}) != 1:
        raise SystemExit("runs without adaptive rows, or on different numbers of images")
    return [all(m[i] == "1" for m in masks) for i in range(len(masks[0]))]


def write(args: argparse.Namespace) -> int:
    entries: list[int] = []
    total = 0
    first_key = None
    for group in args.runs:
        start, paths = int(group[0]), group[1:]
        reports = [load(p) for p in paths]
        keys = {defense_key(r) for r in reports}
        plain = {undefended_plain(r) for r in reports}
        if len(keys) != 1 or len(plain) != 1:
            print(f"runs {paths}: another model, defense options or image set", file=sys.stderr)
            return 2
        if first_key is None:
            first_key = keys.pop()
        elif keys.pop() != first_key:
            print(f"runs {paths}: another model or defense options than the first group", file=sys.stderr)
            return 2
        right = worst(reports)
        print(f"entries {start}-{start + len(right) - 1}: {sum(right)} of {len(right)} right under all {len(paths)} runs' attacks")
        entries += [start + i for i, ok in enumerate(right) if ok]
        total += len(right)

    if args.certified and versus_certified(entries, total, *args.certified):
        return 2
    model, options = first_key
    return write_sets(args.images, entries, total, model, json.loads(options), args.out, args.parts)


def write_sets(images_path: str, entries: list[int], total: int, model: str, options: dict, out: str, parts: int) -> int:
    """Writes entries of images_path (and its labels) as `parts` alike IDX pairs with their index files."""
    images, shape = idx.read(images_path, idx.IMAGES)
    labels, (label_count,) = idx.read(idx.labels_path(images_path), idx.LABELS)
    if max(entries, default=0) >= min(shape[0], label_count):
        print(f"{images_path}: fewer entries than the runs name", file=sys.stderr)
        return 2
    print(f"{len(entries)} survivors of {total} ({100.0 * len(entries) / total:.1f}%)")
    for part in range(parts):
        # Part k takes every parts-th survivor from the k-th, so that the parts are alike (and the runs take alike times).
        chosen = entries[part::parts]
        prefix = out if parts == 1 else f"{out}-p{part + 1}"
        idx.write_entries(images, labels, chosen, prefix)
        with open(f"{prefix}-index.json", "w", encoding="utf-8") as f:
            json.dump({"images": os.path.basename(images_path), "total": total, "model": model, "options": options,
                       "entries": chosen}, f, indent=1)
        print(f"  {len(chosen)} written to {prefix}-*")
    return 0


def count(args: argparse.Namespace) -> int:
    """An image is right if some part's index names it and every part that names it kept it: parts of one round are
    disjoint (their answers are joined), and a later round's index names images of an earlier one (answers are met)."""
    covered: set[int] = set()
    lost: set[int] = set()
    totals = set()
    first = None
    for group in args.part:
        index, paths = load(group[0]), group[1:]
        first = first or index
        reports = [load(p) for p in paths]
        for path, report in zip(paths, reports):
            if report["images"] != len(index["entries"]) or defense_key(report) != defense_key(index):
                print(f"{path}: not a run on the {len(index['entries'])} survivors of {group[0]} with the same model and defense options", file=sys.stderr)
                return 2
        totals.add(index["total"])
        for path, report in zip(paths, reports):
            for scenario, mask in adaptive_masks(report).items():
                print(f"{mask.count('1'):4d} of {len(mask):4d} right  {scenario}  ({path})")
        covered.update(index["entries"])
        lost.update(e for e, ok in zip(index["entries"], worst(reports)) if not ok)
    if len(totals) != 1:
        print("parts of different image sets", file=sys.stderr)
        return 2
    total = totals.pop()
    kept = sorted(covered - lost)
    print(f"{100.0 * len(kept) / total:5.1f}%  worst case over the earlier attacks and these: {len(kept)} of {total} images "
          f"(the indexes named {len(covered)}, {100.0 * len(covered) / total:.1f}%)")
    if args.certified and versus_certified(kept, total, *args.certified):
        return 2
    if args.out:
        return write_sets(args.images, kept, total, first["model"], first["options"], args.out, args.parts)
    return 0


def versus_certified(kept: list[int], total: int, path: str, size: str) -> int:
    """Prints the images right under every attack beside the images certified mode certifies (with their label) against
    SIZE-pixel patches, on the same `total` images; 2 if the certify-eval run is on another number of images."""
    report = load(path)
    rows = [r for r in report["rows"] if r["patchSize"] == int(size) and r.get("certifiedImages")]
    if report["images"] != total or not rows:
        print(f"{path}: not a certify-eval run on the same {total} images with per-image marks at {size}x{size}", file=sys.stderr)
        return 2
    certified = {i for i, c in enumerate(rows[0]["certifiedImages"]) if c == "1"}
    right = set(kept)
    pct = lambda n: f"{n:4d} ({100.0 * n / total:5.1f}%)"
    print(f"certified mode, {size}x{size} ({rows[0]['masks']} masks), on the same {total} images:")
    print(f"  certified                              {pct(len(certified))}")
    print(f"  right under every attack               {pct(len(right))}")
    print(f"  both                                   {pct(len(certified & right))}")
    print(f"  certified, broken by an attack         {pct(len(certified - right))}")
    print(f"  right under every attack, uncertified  {pct(len(right - certified))}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the images every attack so far left right")
    w.add_argument("--images", required=True, help="the IDX images file the runs read (labels: the matching -labels-idx1-ubyte file)")
    w.add_argument("--runs", nargs="+", action="append", required=True, metavar="START_OR_RUN",
                   help="the first entry of the runs' images in --images, then their results-*.json files")
    w.add_argument("--out", required=True, help="prefix of the IDX pair and of the index file written")
    w.add_argument("--parts", type=int, default=1, help="split the survivors into this many alike sets (PREFIX-p1-*, ...), one run per core")
    w.add_argument("--certified", nargs=2, metavar=("CERTIFY_JSON", "SIZE"), help="set the survivors beside certified mode's certificates on the same images")
    c = sub.add_parser("count", help="the worst case over the original images, with runs on the survivors added")
    c.add_argument("--part", nargs="+", action="append", required=True, metavar="INDEX_OR_RUN",
                   help="an -index.json file `write` wrote, then the results-*.json of runs on its images")
    c.add_argument("--out", help="write the images still right, as `write` does (the survivors for a further round); needs --images")
    c.add_argument("--images", help="the original IDX images file (with --out)")
    c.add_argument("--parts", type=int, default=1, help="as for write")
    c.add_argument("--certified", nargs=2, metavar=("CERTIFY_JSON", "SIZE"), help="as for write")
    args = p.parse_args()
    if args.command == "count" and args.out and not args.images:
        p.error("count --out needs --images")
    return write(args) if args.command == "write" else count(args)


if __name__ == "__main__":
    sys.exit(main())
