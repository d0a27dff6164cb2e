"""The local executor: stages as processes on this machine, several at once, each after its needs."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from xmgie.errors import UserError
from xmgie.pipeline.stage import Stage, write_record


def _stage_child(argv: list[str], log: str, threads: int | None, entry: Callable[[list[str]], None]) -> None:
    """A forked stage: output to the log, `entry(argv)` (on `threads` cores when given), exit with its status."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # the parent's sys.stdout/stderr may be wrappers that do not write to fds 1 and 2 (pytest's capture)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    code = 0
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        entry(argv)
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:  # noqa: BLE001  the traceback goes to the stage's log, the status to its record
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


PRELOAD = ["xmgie.training.lightning_cli", "xmgie.evaluation.evaluate", "xmgie.training.lit_identity",
           "xmgie.training.lit_attributes", "xmgie.training.lit_expander", "xmgie.training.lit_mask",
           "xmgie.methods.train"]


def _launch(argv: list[str], log: Path, entry: Callable[[list[str]], None] | None, threads: int | None = None):
    """Start a stage: `entry(argv)` in a child of a fork server that imported the heavy modules once (~8 s saved
    per stage), or, without `entry`, `python -m xmgie.cli <argv>` in a fresh interpreter. The fork server is a
    clean single-threaded process, so its children are safe even when this process holds thread pools or CUDA
    (forking this process itself could deadlock)."""
    if entry is not None:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([entry.__module__, *PRELOAD])
        proc = ctx.Process(target=_stage_child, args=(argv, str(log), threads, entry))
        proc.start()
        return proc.pid, lambda: (proc.join(), proc.exitcode)[1]
    out = open(log, "a")
    popen = subprocess.Popen([sys.executable, "-m", "xmgie.cli", *argv], stdout=out, stderr=subprocess.STDOUT,
                             env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
                                  **({"OMP_NUM_THREADS": str(threads)} if threads else {})})
    return popen.pid, lambda: (popen.wait(), out.close())[0]


def run_stage(stage: Stage, entry: Callable[[list[str]], None] | None = None, threads: int | None = None,
              job: dict[str, str] | None = None) -> str:
    """Run one stage to completion in its own process (`_launch`; on `threads` cores when given); returns its
    final status (done | failed). `job`: the submitted job running it (id, cluster), kept in its record so a
    second submission sees it is held."""
    stage.folder.mkdir(parents=True, exist_ok=True)
    argv = list(stage.argv)
    resumed = stage.kind == "generator" and stage.output.is_file()
    if resumed:
        argv.append(f"--ckpt_path={stage.output}")  # an interrupted run continues from its last checkpoint
    log = stage.folder / "log.txt"
    previous = stage.record()
    rec = {"stage": stage.label, "status": "running", "key": stage.key, "command": shlex.join(["xmgie", *argv]),
           "log": str(log), "started": _now(), "attempts": previous.get("attempts", 0) + 1, "resumed": resumed,
           "code": code_version(), **({"slurm_job": os.environ["SLURM_JOB_ID"]} if "SLURM_JOB_ID" in os.environ
                                      else {}), **(job or {})}
    start = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"\n# {rec['started']} attempt {rec['attempts']}: {rec['command']}\n")
    pid, join = _launch(argv, log, entry, threads)
    write_record(stage, {**rec, "pid": pid})
    code = join()
    ok = code == 0 and stage.output.exists()
    write_record(stage, {**rec, "status": "done" if ok else "failed", "exit_code": code, "finished": _now(),
                         "wall_time_s": round(time.perf_counter() - start + previous.get("wall_time_s", 0.0), 1)})
    return "done" if ok else "failed"


def code_version() -> str | None:
    """The git commit of the code that ran a stage (+ "-dirty" with uncommitted changes); None outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def execute(stages: list[Stage], log=print, entry: Callable[[list[str]], None] | None = None,
            jobs: int = 1) -> dict[str, str]:
    """Run what is not done, up to `jobs` stages at once (each given its share of the cores), a stage as soon as
    its needs are done; a failure skips only the stages that need it. {label: status}, in the stages' order."""
    jobs = max(1, jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    final: dict[str, str] = {n.label: "done" if n.status() == "done" else "missing"  # needs outside this list
                             for s in stages for n in s.needs if n not in stages}
    waiting = list(stages)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict[Any, Stage] = {}
        while waiting or running:
            for s in list(waiting):  # in order: the first stages whose needs are settled go first
                if len(running) >= jobs:
                    break
                states = [final.get(n.label) for n in s.needs]
                if any(state is None for state in states):
                    continue  # a need is still running or waiting
                waiting.remove(s)
                blocked = [n.label for n, state in zip(s.needs, states) if state != "done"]
                if blocked:
                    final[s.label] = "blocked"
                    log(f"blocked  {s.label}: needs {', '.join(blocked)}")
                elif s.status() == "done":
                    final[s.label] = "done"
                    log(f"done     {s.label} (kept: {s.folder})")
                else:
                    log(f"running  {s.label} -> {s.folder}")
                    running[pool.submit(run_stage, s, entry, threads if jobs > 1 else None)] = s
            if not running:
                continue  # everything left was settled without running (kept or blocked)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                s = running.pop(future)
                final[s.label] = future.result()
                rec = s.record()
                log(f"{final[s.label]:8s} {s.label} in {rec.get('wall_time_s')} s" +
                    (f"; log: {rec.get('log')}" if final[s.label] == "failed" else ""))
    return {s.label: final[s.label] for s in stages}


def run_one(stages: list[Stage], label: str, entry: Callable[[list[str]], None] | None = None) -> str:
    """Run the stage called `label` alone; its needs must be done. Returns "done"."""
    by_label = {s.label: s for s in stages}
    if label not in by_label:
        raise UserError(f"no stage {label!r} in this plan (xmgie run --status lists them)")
    s = by_label[label]
    waiting = [n.label for n in s.needs if n.status() != "done"]
    if waiting:
        raise UserError(f"{label} needs {', '.join(waiting)}, not done")
    if s.status() != "done" and run_stage(s, entry) != "done":
        raise UserError(f"{label} failed; log: {s.record().get('log')}")
    return "done"


