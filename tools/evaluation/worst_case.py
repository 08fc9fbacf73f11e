#!/usr/bin/env python3
"""Worst case over adaptive attacks from several `strapvit evaluate` runs on the same images.

Each run's results-*.json lists, for every adaptive attack, which images the defense got right (`correctImages`,
one character per image, written since session 11). An image counts for the worst case only if every attack in every
file left it right. Runs must share the model, the images and the defense options; the script refuses otherwise. As
a check that they share the images, the undefended model under the non-adaptive patch (made without the defense) must
give the same per-image answers in every run.

    python3 tools/evaluation/worst_case.py RUN1/results-report.json RUN2/results-report.json ...
"""
from __future__ import annotations

import argparse
import json
import sys


# Defense options that results written before they existed lack, with the values the defense then ran with.
OPTION_DEFAULTS = {"windowGrowRatio": 0, "verifyRule": "Unanimous", "verifyComplete": False, "windowMinRatioSum": 0}


def adaptive_masks(report: dict, defended: bool = True) -> dict[str, str]:
    """Per-image answers (`correctImages`) of the report's adaptive attacks, by scenario: under the defense, or
    (defended=False) on the undefended model. The rows' own worst case is left out."""
    return {row["scenario"]: row["correctImages"] for row in report["rows"]
            if row.get("correctImages") and row["section"].startswith("adaptive") and "worst case" not in row["scenario"]
            and (row["defense"] != "none") == defended}


def defense_key(report: dict) -> tuple[str, str]:
    """Model and defense options of a run. Options added after a run was written read as their defaults, so that older
    results still combine."""
    return report["model"], json.dumps({**OPTION_DEFAULTS, **report["options"]}, sort_keys=True)


def undefended_plain(report: dict) -> str | None:
    """Per-image answers of the undefended model under the non-adaptive patch: made without the defense, so the same in
    every run on the same images, and a check that runs share them."""
    return next((m for s, m in adaptive_masks(report, defended=False).items() if "non-adaptive" in s), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="results-*.json files written by `strapvit evaluate --output`")
    args = p.parse_args()
    first = None
    attacks: list[tuple[str, str, str]] = []
    for path in args.results:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        key = (defense_key(report), report["images"], undefended_plain(report))
        if first is None:
            first = key
        elif key != first:
            print(f"{path}: another model, image set or defense options than {args.results[0]}", file=sys.stderr)
            return 2
        attacks.extend((path, scenario, mask) for scenario, mask in adaptive_masks(report).items())
    if not attacks:
        print("no adaptive rows with correctImages (runs older than session 11 do not have them)", file=sys.stderr)
        return 2
    lengths = {len(m) for _, _, m in attacks}
    if len(lengths) != 1:
        print(f"attacks on different numbers of images: {sorted(lengths)}", file=sys.stderr)
        return 2
    n = lengths.pop()
    worst = [True] * n
    for path, scenario, mask in attacks:
        right = [c == "1" for c in mask]
        worst = [w and r for w, r in zip(worst, right)]
        print(f"{100.0 * sum(right) / n:5.1f}%  {scenario}  ({path})")
    print(f"{100.0 * sum(worst) / n:5.1f}%  worst case over these {len(attacks)} attacks, {n} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
