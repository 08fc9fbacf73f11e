#!/usr/bin/env python3
"""Paired comparison of two defense configurations under the same adaptive attacks on the same images.

Each `--pair A B` names two results-*.json files written by `strapvit evaluate --output` on one image set: A and B
differ only in the defense options. Several pairs (several image sets) are pooled. For every attack that both runs
made (matched by scenario name), and for the worst case over those attacks (an image counts only if every attack left
it right), the script counts the images each configuration kept, the discordant images (right under one, wrong under
the other), and the exact two-sided sign test on the discordant images: the probability, if neither configuration were
better, of a split at least this uneven. 100 or 200 images resolve differences of several points at best; the test says
how much of a difference is noise.

    python3 tools/evaluation/paired.py --pair DEFAULT/results-tune.json CANDIDATE/results-tune.json \
                                       --pair DEFAULT2/results-tune.json CANDIDATE2/results-tune.json

As a check that a pair shares its images, the undefended model under the non-adaptive patch (made without the defense,
so the same in both runs) must give the same per-image answers in A and B; the script refuses otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
from math import comb

from worst_case import adaptive_masks


def sign_test(only_a: int, only_b: int) -> float:
    """Exact two-sided binomial test of only_a against only_b at p = 1/2 (1.0 when there is nothing discordant)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def attack_rows(path: str) -> tuple[dict, dict[str, str], dict[str, str]]:
    """The report, its defended adaptive rows (scenario -> per-image mask) and its undefended ones."""
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    return report, adaptive_masks(report), adaptive_masks(report, defended=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", nargs=2, action="append", required=True, metavar=("A", "B"),
                   help="results of configuration A and of configuration B on one image set")
    args = p.parse_args()

    pooled_a: dict[str, list[bool]] = {}
    pooled_b: dict[str, list[bool]] = {}
    common: set[str] | None = None
    for path_a, path_b in args.pair:
        report_a, rows_a, none_a = attack_rows(path_a)
        report_b, rows_b, none_b = attack_rows(path_b)
        if report_a["model"] != report_b["model"] or report_a["images"] != report_b["images"]:
            print(f"{path_a} and {path_b}: another model or image count", file=sys.stderr)
            return 2
        # Only the non-adaptive patch is the same in both runs; the adaptive ones are made against each defense.
        shared_none = {s for s in set(none_a) & set(none_b) if "non-adaptive" in s}
        if not shared_none or any(none_a[s] != none_b[s] for s in shared_none):
            print(f"{path_a} and {path_b}: the undefended rows differ, so the images or the attacks are not the same",
                  file=sys.stderr)
            return 2
        scenarios = set(rows_a) & set(rows_b)
        common = scenarios if common is None else common & scenarios
        for scenario in scenarios:
            pooled_a.setdefault(scenario, []).extend(c == "1" for c in rows_a[scenario])
            pooled_b.setdefault(scenario, []).extend(c == "1" for c in rows_b[scenario])
    if not common:
        print("no adaptive attack appears in every run", file=sys.stderr)
        return 2

    ordered = sorted(common)
    n = len(pooled_a[ordered[0]])
    worst_a = [all(pooled_a[s][i] for s in ordered) for i in range(n)]
    worst_b = [all(pooled_b[s][i] for s in ordered) for i in range(n)]
    print(f"{n} images, {len(args.pair)} set(s); A = first file of each pair, B = second")
    print(f"{'A':>6} {'B':>6} {'B - A':>7} {'only A':>7} {'only B':>7} {'p (sign test)':>14}  attack")
    for name, a, b in [(s, pooled_a[s], pooled_b[s]) for s in ordered] + [
            (f"worst case over these {len(ordered)} attacks", worst_a, worst_b)]:
        only_a = sum(x and not y for x, y in zip(a, b))
        only_b = sum(y and not x for x, y in zip(a, b))
        ra, rb = 100.0 * sum(a) / n, 100.0 * sum(b) / n
        print(f"{ra:5.1f}% {rb:5.1f}% {rb - ra:+6.1f} {only_a:7d} {only_b:7d} {sign_test(only_a, only_b):14.3f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
