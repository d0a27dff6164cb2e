"""`xmgie run --executor slurm | submitit-local`: a table's stages as submitit jobs instead of local processes.

Every stage that is neither done nor held by a live job becomes one job (its submitit files under
`<stage folder>/submitit/`) that runs the stage as a local run would: the same command, key, `stage.json`, log
and resume from last.ckpt. On SLURM a job starts after the jobs of the stages it needs (`afterok`; a job whose
need failed is cancelled by SLURM) and a last job, once every stage job has ended (`afterany`), aggregates the
seeds and renders the table; the command returns once everything is submitted. submitit's local executor
(`submitit-local`: real subprocesses on this machine, the same submission and job code) has no dependencies, so
every job first waits until the stages it needs are settled, and the command waits for the table job.
Submitting again submits only what is neither done nor still queued or running.
"""
from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any, Callable

from xmgie.errors import UserError
from xmgie.pipeline.local import run_stage
from xmgie.pipeline.stage import Stage, write_record

CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}  # --executor → submitit's cluster
DEFAULT_TIMEOUT_MIN = 7 * 24 * 60  # submitit's default (5 min on SLURM, 2 on the local executor) kills real stages
SETTLED = ("done", "failed", "blocked", "interrupted", "pending")  # neither queued nor running: nothing to wait for


def sbatch_options(text: str | None) -> dict[str, str | bool]:
    """'--partition=gpu --time=24:00:00 --exclusive' → {"partition": "gpu", "time": "24:00:00", "exclusive": True}:
    extra #SBATCH lines for every job (submitit's `additional_parameters`)."""
    out: dict[str, str | bool] = {}
    for item in shlex.split(text or ""):
        if not item.startswith("--"):
            raise UserError(f"--sbatch takes options as --name=value, got {item!r}")
        name, sep, value = item[2:].partition("=")
        out[name] = value if sep else True
    return out


def stage_resources(budget: dict[str, Any], kind: str) -> dict[str, Any]:
    """The submitit parameters of a job of this stage kind: the budget's `resources` for `default`, then for the
    kind (e.g. {generator: {gpus_per_node: 1, timeout_min: 1440}}); a week's timeout unless it says otherwise."""
    resources = budget.get("resources") or {}
    return {"timeout_min": DEFAULT_TIMEOUT_MIN, **resources.get("default", {}), **resources.get(kind, {})}


def make_executor(cluster: str, folder: Path, resources: dict[str, Any], extra: dict[str, Any],
                  after: list[str], after_kind: str = "afterok"):
    """A submitit executor for one job: `resources` (budget), `extra` #SBATCH options, and on SLURM a dependency
    on the jobs `after` (cancelled when one of them fails)."""
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    except RuntimeError as err:  # no srun: not a SLURM node
        raise UserError(f"--executor slurm: {err}") from None
    resources = dict(resources)
    dependency = {"dependency": f"{after_kind}:{':'.join(after)}", "kill-on-invalid-dep": "yes"} if after else {}
    extra = {**resources.pop("slurm_additional_parameters", {}), **extra, **dependency}
    try:
        executor.update_parameters(**resources, slurm_additional_parameters=extra)
    except (ValueError, TypeError, NameError) as err:  # submitit names the parameter it does not know
        raise UserError(f"budget resources: {str(err).splitlines()[0]}") from None
    return executor


def wait_settled(stages: list[Stage], poll_s: float) -> None:
    """Block until none of `stages` is queued or running (each settled: done, failed, blocked, …)."""
    while any(s.status() not in SETTLED for s in stages):
        time.sleep(poll_s)


def stage_job(stage: Stage, poll_s: float = 2.0) -> str:
    """What a stage's job runs on its node.

    1. Wait until the stages it needs are settled (at once on SLURM: `afterok` started it after them).
    2. One of them not done: record the stage as blocked and fail.
    3. Run the stage (its own interpreter, log.txt, stage.json, which keeps this job's id while it runs) and
       return its status; a failure fails the job.
    """
    wait_settled(stage.needs, poll_s)  # 1.
    blocked = [n.label for n in stage.needs if n.status() != "done"]
    if blocked:  # 2.
        write_record(stage, {**stage.record(), "status": "blocked", "blocked_by": blocked})
        raise RuntimeError(f"{stage.label} needs {', '.join(blocked)}, not done")
    submitted = {k: v for k, v in stage.record().items() if k in ("job", "cluster", "slurm_job")}
    if run_stage(stage, job=submitted) != "done":  # 3.
        raise RuntimeError(f"{stage.label} failed; log: {stage.record().get('log')}")
    return "done"


def table_job(stages: list[Stage], finish: Callable[[], dict[str, Any]], poll_s: float = 2.0) -> dict[str, Any]:
    """The last job: once every stage is settled, `finish()` aggregates the seeds and renders the table."""
    wait_settled(stages, poll_s)
    return finish()


def submit(stages: list[Stage], cluster: str, budget: dict[str, Any], extra: dict[str, Any], work: Path,
           finish: Callable[[], dict[str, Any]], log: Callable[[str], object] = print, poll_s: float = 2.0):
    """Submit every stage that is neither done nor held by a live job, then the table job; returns the table
    job (submitit's Job: `.result()` waits for it) and {label: job id}.

    1. A stage done: nothing. A stage whose recorded job is still queued or running: kept, its id used as a
       dependency.
    2. Otherwise: submitted after the jobs of its needs; stage.json says "queued" with the job's id.
    3. The table job: after every stage job has ended (afterany); it reports the stages that did not finish.
    """
    jobs: dict[str, str] = {}
    for s in stages:
        state, rec = s.status(), s.record()
        if state == "done":  # 1.
            continue
        if state in ("queued", "running") and rec.get("job"):
            jobs[s.label] = rec["job"]
            log(f"{state:8s} {s.label} (job {rec['job']})")
            continue
        s.folder.mkdir(parents=True, exist_ok=True)  # 2.
        after = [jobs[n.label] for n in s.needs if n.label in jobs]
        executor = make_executor(cluster, s.folder / "submitit", stage_resources(budget, s.kind), extra, after)
        executor.update_parameters(name=f"xmgie:{s.label}")
        job = executor.submit(stage_job, s, poll_s)
        jobs[s.label] = job.job_id
        write_record(s, {**rec, "stage": s.label, "status": "queued", "key": s.key, "job": job.job_id,
                         "cluster": cluster, **({"slurm_job": job.job_id} if cluster == "slurm" else {})})
        log(f"submitted {s.label}: job {job.job_id}" + (f" after {', '.join(after)}" if after else ""))
    executor = make_executor(cluster, work / "submitit", stage_resources(budget, "table"), extra,  # 3.
                             sorted(set(jobs.values())), "afterany")
    executor.update_parameters(name="xmgie:table")
    table = executor.submit(table_job, stages, finish, poll_s)
    log(f"submitted the table: job {table.job_id} once every stage job has ended")
    return table, jobs
