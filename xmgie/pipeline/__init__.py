"""Experiment pipelines: a paper table as resumable stages (`xmgie run`, `make ablation`, `make table1`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from xmgie.errors import UserError
from xmgie.pipeline.runner import aggregate, execute, load_budget, plan, run_one, status_lines
from xmgie.pipeline.slurm import submit


def seeds_note(budget: dict[str, Any]) -> str:
    """The budget's seeds as the table's footnote says them."""
    note = f"seeds {budget['seeds']}"
    if "scratch_seeds" in budget and budget["scratch_seeds"] != budget["seeds"]:
        note += f" (rows trained from scratch: {budget['scratch_seeds']})"
    return note


def run_table(spec: str | Path, budget: str = "auto", datasets: list[str] | None = None,
              roots: dict[str, str] | None = None, status: bool = False, work: str | Path = "runs/pipeline",
              results_root: str | Path = ".", out: str | Path | None = None,
              log: Callable[[str], Any] = print, entry: Callable[[list[str]], None] | None = None,
              stage: str | None = None,
              executor: str = "local", sbatch_options: list[str] | None = None,
              jobs: int | None = None) -> dict[str, Any]:
    """Plan the spec's stages, run what is not done, aggregate seeds, render the table and its plot.

    1. Plan: datasets whose data is present (the others become footnotes), stages keyed by their inputs.
    2. `status`: only report every stage (done / running / failed / interrupted / pending) and stop.
    3. Run what is missing, in order; failures skip only what needs them.
    4. Mean ± std over seeds into the spec's result files; the table in Markdown, CSV, LaTeX; a bar plot.

    `entry`: the function that runs a stage's command line (`xmgie.cli.main`), called in children of a fork
    server that imports the heavy modules once (~8 s saved per stage); None: every stage in a fresh interpreter
    (`python -m xmgie.cli`). `stage`: run that stage alone (its needs must be done) and stop. `jobs`: stages run
    at once here (default: the budget's `jobs`, else 1). `executor="slurm"`: submit the stages not done as SLURM
    jobs (`sbatch_options` for every job) instead of running them here (xmgie/pipeline/slurm.py).
    """
    from xmgie.evaluation.tables import load_spec, render
    from xmgie.pipeline.plot import plot_table

    plan_budget = load_budget(budget, Path("."))
    stages, skipped, raw = plan(spec, plan_budget, datasets, roots, work)
    if status:
        for line in status_lines(stages, skipped):
            log(line)
        return {"stages": {s.label: s.status() for s in stages}, "not_run": skipped}
    if stage is not None:
        return {"stages": {stage: run_one(stages, stage, entry)}}
    if executor == "slurm":
        argv = ["run", "--spec", str(spec), "--budget", plan_budget["name"], "--work", str(work), "--results",
                str(results_root), *(["--datasets", *datasets] if datasets else []),
                *(a for d, r in (roots or {}).items() for a in ("--data-root", f"{d}={r}"))]
        jobs = submit(stages, lambda s: [*argv, "--stage", s.label], argv, sbatch_options or [], Path(work),
                      Path.cwd(), log)
        return {"stages": {s.label: s.status() for s in stages}, "jobs": jobs, "not_run": skipped}
    jobs = jobs or plan_budget.get("jobs", 1)
    log(f"budget {plan_budget['name']}: {len(stages)} stages, {seeds_note(plan_budget)}, {jobs} at a time" +
        "".join(f"; {d}: {why}" for d, why in skipped.items()))
    final = execute(stages, log, entry, jobs)
    aggregate(stages, raw, results_root)
    table = load_spec(spec)
    keep = set(datasets) if datasets else {d.name for d in table.datasets}
    table = dataclasses.replace(table, datasets=[d for d in table.datasets if d.name in keep],
                                notes=table.notes + [f"{d}: {why}" for d, why in skipped.items()] +
                                [f"budget {plan_budget['name']}, {seeds_note(plan_budget)}; stages under {work}"])
    target = Path(out) if out else Path(results_root) / "results" / table.name
    written = render(table, target, results_root)
    written["png"] = plot_table(table, results_root, target.with_name(target.name + ".png"))
    failed = [label for label, state in final.items() if state in ("failed", "blocked")]
    for path in written.values():
        log(str(path))
    if failed:
        raise UserError(f"{len(failed)} stage(s) did not finish: {', '.join(failed)} "
                        f"(xmgie run --spec {spec} --status lists their logs)")
    return {"stages": final, "not_run": skipped, "written": {k: str(v) for k, v in written.items()}}
