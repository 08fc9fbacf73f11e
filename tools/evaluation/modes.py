#!/usr/bin/env python3
"""Certify mode's answers beside the empirical defense's, image by image, on the same images.

Reads a certify-*.json written by `strapvit certify-eval --plain-patches ...` and a results-*.json written by
`strapvit evaluate` on the same images with the same per-image patches (same --steps, --seed and --patch-cache). For
clean images and for each plain patch size, it prints each mode's accuracy, the images right under one mode only, the
exact two-sided sign test on those, and the share right under either (what a perfect choice between the two would keep).
Where evaluate recorded the masking check's outcome per image (`checkOutcomes`, since session 21), it also prints F:
mitigate's answer, except where its check kept its answer (a window disagreed, none passed the second round), where
it is certify mode's; and how many images the check kept. Where certify-eval recorded each answer's branch
(`caseImages`), also F2 (certify mode's answer there only if its second round gave it or it is certified) and F3 (only
if it is certified).

    python3 tools/evaluation/modes.py --certify CERT/certify-fashion-vit-tiny-tune.json \
                                      --evaluate EVAL/results-tune.json --masks 6

As a check that the two runs share their patched images, the undefended model's accuracy on them must be the same in
both files; the script refuses otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys

from paired import sign_test


def variant(name: str, a: str, b: str, outcomes: str, take) -> str:
    """Mitigate's answers b, except where its check kept (outcome k) and take(i) holds: there certify mode's answers a."""
    n = len(a)
    f = [a[i] if outcomes[i] == "k" and take(i) else b[i] for i in range(n)]
    gained = sum(1 for i in range(n) if f[i] == "1" and b[i] == "0")
    lost = sum(1 for i in range(n) if f[i] == "0" and b[i] == "1")
    switched = sum(1 for i in range(n) if outcomes[i] == "k" and take(i))
    return (f"\n{'':<14} {name:<2} {100 * f.count('1') / n:6.2f}  (certify's answer on {switched} where the check kept: "
            f"right there only under {name} {gained}, only under mitigate {lost}, p = {sign_test(gained, lost):.3g})")


def compare(name: str, a: str, b: str, outcomes: str | None, cases: str | None = None) -> str:
    n = len(a)
    only_a = sum(1 for x, y in zip(a, b) if x == "1" and y == "0")
    only_b = sum(1 for x, y in zip(a, b) if x == "0" and y == "1")
    either = sum(1 for x, y in zip(a, b) if "1" in (x, y))
    line = (f"{name:<14} certify {100 * a.count('1') / n:6.2f}  mitigate {100 * b.count('1') / n:6.2f}  "
            f"certify only {only_a:4d}  mitigate only {only_b:4d}  p = {sign_test(only_a, only_b):.3g}  either {100 * either / n:6.2f}")
    if outcomes is not None:
        if len(outcomes) != n:
            raise SystemExit(f"{name}: {len(outcomes)} check outcomes for {n} images")
        line += variant("F", a, b, outcomes, lambda i: True)
        if cases is not None:
            line += variant("F2", a, b, outcomes, lambda i: cases[i] in "sASM")
            line += variant("F3", a, b, outcomes, lambda i: cases[i].isupper())
    return line


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--certify", required=True, help="certify-*.json with plainPatches rows")
    p.add_argument("--evaluate", required=True, help="results-*.json of evaluate on the same images (written since session 21)")
    p.add_argument("--masks", type=int, required=True, help="patch side the certify mask set is sized for")
    args = p.parse_args()
    with open(args.certify, encoding="utf-8") as f:
        cert = json.load(f)
    with open(args.evaluate, encoding="utf-8") as f:
        ev = json.load(f)

    def evaluated(section: str, scenario_start: str, defense: str) -> dict:
        rows = [r for r in ev["rows"] if r["section"] == section and r["scenario"].startswith(scenario_start) and r["defense"] == defense]
        if len(rows) != 1 or not rows[0].get("correctImages"):
            raise SystemExit(f"{args.evaluate}: no single {section} / {scenario_start} / {defense} row with correctImages")
        return rows[0]

    clean = [r for r in cert["rows"] if r["patchSize"] == args.masks and r.get("correctImages")]
    if not clean:
        raise SystemExit(f"{args.certify}: no {args.masks}x{args.masks} row with correctImages")
    print(f"{cert['model']}, {cert['images']} images, certify mode with masks for {args.masks}x{args.masks} ({clean[0]['masks']} masks) "
          f"against the empirical defense (evaluate's token row)")
    token = evaluated("clean", "clean", "token")
    print(compare("clean", clean[0]["correctImages"], token["correctImages"], token.get("checkOutcomes"), clean[0].get("caseImages")))
    for row in (r for r in cert["plainPatches"] if r["maskSize"] == args.masks):
        size = row["patchSize"]
        none = evaluated("per-image patch", f"{size}x{size}", "none")
        if abs(none["accuracy"] - row["undefended"]) > 1e-9:
            raise SystemExit(f"{size}x{size}: the undefended model scores {none['accuracy']} in evaluate and {row['undefended']} in certify-eval: "
                             "not the same patched images")
        token = evaluated("per-image patch", f"{size}x{size}", "token")
        print(compare(f"{size}x{size} patches", row["correctImages"], token["correctImages"], token.get("checkOutcomes"), row.get("caseImages")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
