"""Experiment pipelines: a paper table as resumable stages (`xmgie run`, `make ablation`, `make table1`)."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable

from xmgie.errors import UserError
from xmgie.pipeline.aggregate import aggregate
from xmgie.pipeline.budgets import load_budget
from xmgie.pipeline.cluster import CLUSTERS, sbatch_options, submit
from xmgie.pipeline.local import execute, run_one
from xmgie.pipeline.plan import plan
from xmgie.pipeline.stage import status_lines


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
              stage: str | None = None, executor: str = "local", sbatch: str | None = None,
              jobs: int | None = None, poll_s: float = 2.0) -> dict[str, Any]:
    """Plan the spec's stages, run what is not done, aggregate seeds, render the table and its plot.

    1. Plan: datasets whose data is present (the others become footnotes), stages keyed by their inputs.
    2. `status`: only report every stage (done / running / failed / interrupted / pending) and stop.
    3. Run what is missing, in order; failures skip only what needs them.
    4. Mean ± std over seeds into the spec's result files; the table in Markdown, CSV, LaTeX; a bar plot.

    `entry`: the function that runs a stage's command line (`xmgie.cli.main`), called in children of a fork
    server that imports the heavy modules once (~8 s saved per stage); None: every stage in a fresh interpreter
    (`python -m xmgie.cli`). `stage`: run that stage alone (its needs must be done) and stop. `jobs`: stages run
    at once here (default: the budget's `jobs`, else 1). `executor`: "local" (processes here), "slurm" or
    "submitit-local" (submitit jobs, xmgie/pipeline/cluster.py; `sbatch`: extra #SBATCH options for every job,
    the budget's `resources` per stage kind); SLURM returns once submitted, the local executor waits for the table.
    """
    plan_budget = load_budget(budget, Path("."))
    stages, skipped, raw = plan(spec, plan_budget, datasets, roots, work)
    if status:
        for line in status_lines(stages, skipped):
            log(line)
        return {"stages": {s.label: s.status() for s in stages}, "not_run": skipped}
    if stage is not None:
        return {"stages": {stage: run_one(stages, stage, entry)}}
    finish = functools.partial(finish_table, stages, raw, skipped, spec, datasets, plan_budget, work, results_root,
                               out)
    if executor in CLUSTERS:
        table, submitted = submit(stages, CLUSTERS[executor], plan_budget, sbatch_options(sbatch), Path(work),
                                  finish, log, poll_s)
        if CLUSTERS[executor] == "slurm":
            return {"stages": {s.label: s.status() for s in stages}, "jobs": submitted, "not_run": skipped}
        result = table.result()  # the local executor: wait, as a local run does
    elif executor == "local":
        jobs = jobs or plan_budget.get("jobs", 1)
        log(f"budget {plan_budget['name']}: {len(stages)} stages, {seeds_note(plan_budget)}, {jobs} at a time" +
            "".join(f"; {d}: {why}" for d, why in skipped.items()))
        execute(stages, log, entry, jobs)
        result = finish()
    else:
        raise UserError(f"unknown executor {executor!r}; choose local, {', '.join(CLUSTERS)}")
    for path in result["written"].values():
        log(path)
    if result["failed"]:
        raise UserError(f"{len(result['failed'])} stage(s) did not finish: {', '.join(result['failed'])} "
                        f"(xmgie run --spec {spec} --status lists their logs)")
    return result


def finish_table(stages: list, raw: dict, skipped: dict[str, str], spec: str | Path, datasets: list[str] | None,
                 budget: dict[str, Any], work: str | Path, results_root: str | Path,
                 out: str | Path | None) -> dict[str, Any]:
    """Once the stages are settled: the seeds' mean ± std into the result files, the table and its plot.
    Returns {stages: {label: status}, not_run, written: {format: path}, failed: [labels not done]}."""
    from xmgie.evaluation.tables import load_spec, render
    from xmgie.pipeline.plot import plot_table

    final = {s.label: s.status() for s in stages}
    aggregate(stages, raw, results_root)
    table = load_spec(spec)
    keep = set(datasets) if datasets else {d.name for d in table.datasets}
    table = dataclasses.replace(table, datasets=[d for d in table.datasets if d.name in keep],
                                notes=table.notes + [f"{d}: {why}" for d, why in skipped.items()] +
                                [f"budget {budget['name']}, {seeds_note(budget)}; stages under {work}"])
    target = Path(out) if out else Path(results_root) / "results" / table.name
    written = render(table, target, results_root)
    written["png"] = plot_table(table, results_root, target.with_name(target.name + ".png"))
    return {"stages": final, "not_run": skipped, "written": {k: str(v) for k, v in written.items()},
            "failed": [label for label, state in final.items() if state != "done"]}
