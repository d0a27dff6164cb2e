"""`xmgie run --executor slurm`: a table's stages as SLURM jobs instead of local processes.

Every stage that is not done becomes one job (`<stage folder>/job.sh`, submitted with `sbatch`) that runs
`xmgie run … --stage <label>` on a node: the same command, key and bookkeeping (stage.json, log.txt, resume from
last.ckpt) as a local run, for that stage alone. A job waits for the jobs of the stages it needs
(`--dependency=afterok:…`); a last job, once every stage job has ended, aggregates the seeds and renders the table.
Submitting again submits only what is neither done nor still queued or running (`squeue`).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable

from xmgie.errors import UserError
from xmgie.pipeline.runner import Stage, _write


def job_script(command: list[str], repo: Path) -> str:
    """A bash script running `xmgie <command>` in `repo` with this interpreter (SLURM's --output takes what it
    prints; the stage's own log goes to its log.txt as in a local run)."""
    env = f"export HF_HUB_OFFLINE={shlex.quote(os.environ.get('HF_HUB_OFFLINE', '1'))}"
    run = shlex.join([sys.executable, "-m", "xmgie.cli", *command])
    return f"#!/bin/bash\nset -euo pipefail\ncd {shlex.quote(str(repo))}\n{env}\nexec {run}\n"


def sbatch(script: Path, name: str, after: list[str], options: list[str], kind: str = "afterok") -> str:
    """Submit `script`; returns the job id. A refused submission is a UserError with sbatch's message."""
    argv = ["sbatch", "--parsable", f"--job-name={name}", f"--output={script.parent / 'slurm-%j.out'}",
            *([f"--dependency={kind}:{':'.join(after)}"] if after else []), *options, str(script)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except OSError as err:
        raise UserError(f"cannot run sbatch: {err} (is this a SLURM login node?)") from None
    if proc.returncode != 0:
        raise UserError(f"sbatch refused {script}: {proc.stderr.strip().splitlines()[-1] if proc.stderr else ''}")
    return proc.stdout.strip().split(";")[0]


def submit(stages: list[Stage], stage_command: Callable[[Stage], list[str]], table_command: list[str],
           options: list[str], work: Path, repo: Path, log: Callable[[str], object] = print) -> dict[str, str]:
    """Submit every stage that is neither done nor queued, then the table job. Returns {label: job id}.

    1. A stage done: nothing. A stage whose recorded job SLURM still holds: kept, its id used for dependencies.
    2. Otherwise: job.sh written in its folder, submitted after the jobs of its needs; stage.json says "queued".
    3. The table job: after every stage job has ended (afterany), `xmgie run` without --stage aggregates and
       renders (a stage that failed is reported there).
    """
    jobs: dict[str, str] = {}
    for s in stages:
        rec, state = s.record(), s.status()  # status asks squeue about a recorded job
        if state == "done":  # 1.
            continue
        if state in ("queued", "running") and rec.get("slurm_job"):
            jobs[s.label] = rec["slurm_job"]
            log(f"{state:8s} {s.label} (job {rec['slurm_job']})")
            continue
        s.folder.mkdir(parents=True, exist_ok=True)  # 2.
        script = s.folder / "job.sh"
        script.write_text(job_script(stage_command(s), repo))
        after = [jobs[n.label] for n in s.needs if n.label in jobs]
        jobs[s.label] = sbatch(script, f"xmgie:{s.label}", after, options)
        _write(s, {**rec, "stage": s.label, "status": "queued", "key": s.key, "slurm_job": jobs[s.label]})
        log(f"submitted {s.label}: job {jobs[s.label]}" + (f" after {', '.join(after)}" if after else ""))
    if jobs:  # 3.
        work.mkdir(parents=True, exist_ok=True)
        script = work / "table-job.sh"
        script.write_text(job_script(table_command, repo))
        table = sbatch(script, "xmgie:table", sorted(set(jobs.values())), options, kind="afterany")
        log(f"submitted the table: job {table} once every stage job has ended")
    return jobs
