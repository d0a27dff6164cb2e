"""The seeds of each method's evaluations into one result file: mean, and std where there are several."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from xmgie.pipeline.stage import Stage


def aggregate(stages: list[Stage], raw: dict, results_root: str | Path = ".") -> list[Path]:
    """Per (dataset, method): the seeds' result files into the spec's result path — mean, and std over seeds
    where there are several — keeping every per-seed file's provenance."""
    written = []
    by_method: dict[tuple[str, str], list[Stage]] = {}
    for s in stages:
        if s.kind == "evaluate" and s.status() == "done":
            by_method.setdefault((s.dataset, s.method), []).append(s)
    for (dataset, method), done in by_method.items():
        runs = [json.loads(s.output.read_text()) for s in done]
        merged = dict(runs[0])
        names = set.intersection(*(set(r["metrics"]) for r in runs))
        merged["metrics"] = {k: statistics.fmean(r["metrics"][k] for r in runs) for k in sorted(names)}
        if len(runs) > 1:
            merged["metrics_std"] = {k: statistics.stdev(r["metrics"][k] for r in runs) for k in sorted(names)}
        merged["seeds"] = [r["seed"] for r in runs]
        merged["seed"] = ", ".join(str(r["seed"]) for r in runs) + (" (mean ± std)" if len(runs) > 1 else "")
        merged["runs"] = [{"seed": r["seed"], "result": str(s.output), "stage": str(s.folder),
                           "metrics": r["metrics"]} for r, s in zip(runs, done)]
        path = Path(results_root) / raw.get("results", "results/{dataset}/{method}.json").format(
            dataset=dataset, method=method)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2) + "\n")
        written.append(path)
    return written


