"""A table's numbers as bars: one panel per (dataset, metric), one bar per method, error bars = std over seeds."""
from __future__ import annotations

from pathlib import Path

from xmgie.evaluation.tables import LABELS, TableSpec, read_results
from xmgie.metrics.metrics import HIGHER_IS_BETTER


def plot_table(spec: TableSpec, root: str | Path, out: str | Path) -> Path:
    """Write a PNG of every metric the spec shows for which at least one method has a value."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    results = read_results(spec, root)
    panels = [(d, m) for d in spec.datasets for m in d.columns
              if any(m in results.get((d.name, name), {}).get("metrics", {}) for name, _ in spec.methods)]
    cols = min(4, max(1, len(panels)))
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    if not panels:
        axes.flat[0].text(0.5, 0.5, "no results yet", ha="center", va="center")
    for ax, (d, metric) in zip(axes.flat, panels):
        names, means, stds = [], [], []
        for name, label in spec.methods:
            r = results.get((d.name, name))
            if r and metric in r["metrics"]:
                names.append(label)
                means.append(r["metrics"][metric])
                stds.append(r.get("metrics_std", {}).get(metric, 0.0))
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        arrow = "↑" if HIGHER_IS_BETTER[metric] else "↓"
        ax.set_title(f"{d.label}: {LABELS.get(metric, metric)} {arrow}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
