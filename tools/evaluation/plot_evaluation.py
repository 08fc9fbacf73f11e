#!/usr/bin/python3
"""Plot docs/evaluation/results-report.json (written by `strapvit evaluate`) as docs/evaluation/evaluation.png.

Usage (repository root; needs Debian's python3-matplotlib):
    /usr/bin/python3 tools/evaluation/plot_evaluation.py [docs/evaluation/results-report.json]
"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/evaluation/results-report.json")
report = json.loads(path.read_text())
rows = report["rows"]
defenses = ["none", "token", "pixel"]
colors = {"none": "#999999", "token": "#d62728", "pixel": "#1f77b4"}

fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), gridspec_kw={"width_ratios": [3, 3, 2]})
for ax, section in zip(axes[:2], ["per-image patch", "universal patch"]):
    clean = {r["defense"]: r["accuracy"] for r in rows if r["section"] == "clean"}
    scenarios = ["clean"] + [r["scenario"] for r in rows if r["section"] == section and r["defense"] == "none"]
    width = 0.27
    for j, d in enumerate(defenses):
        values = [clean.get(d, 0)] + [r["accuracy"] for r in rows if r["section"] == section and r["defense"] == d]
        xs = [i + (j - 1) * width for i in range(len(values))]
        ax.bar(xs, [100 * v for v in values], width, label={"none": "no defense", "token": "STRAP-ViT (token)", "pixel": "pixel variant"}[d], color=colors[d])
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([s.replace(" (", "\n(") for s in scenarios], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{section}, {report['images']} test images")
    ax.grid(axis="y", alpha=0.3)
axes[0].legend(fontsize=8, loc="lower left")

adaptive = [r for r in rows if r["section"].startswith("adaptive")]
labels = [f"{r['section'].replace('adaptive ', '').replace(' patch', '')}, {r['scenario'].split(') ')[-1].replace(' (EOT)', ' EOT')}, {r['defense']}" for r in adaptive]
axes[2].bar(range(len(adaptive)), [100 * r["accuracy"] for r in adaptive], color=[colors[r["defense"]] for r in adaptive])
axes[2].set_xticks(range(len(adaptive)))
axes[2].set_xticklabels(labels, fontsize=7, rotation=35, ha="right")
axes[2].set_ylim(0, 100)
axes[2].set_title("6x6 patch: adaptive vs non-adaptive", fontsize=10)
axes[2].grid(axis="y", alpha=0.3)

fig.tight_layout()
out = path.with_name("evaluation.png")
fig.savefig(out, dpi=110)
print("wrote", out)
