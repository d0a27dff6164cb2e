"""A stage of a pipeline: one command run into its own folder, with its record (`stage.json`) and status."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xmgie.stages import PIPELINE_STAGES

STAGE_KINDS = ("identity", "attributes", "mask", "expander", "generator", "baseline", "derive", "evaluate")
EDITORS = ("generator", "baseline", "derive")  # stages whose output is a checkpoint `xmgie evaluate` reads


@dataclass
class Stage:
    """One unit of work: `argv` (after `xmgie`) run in `folder`; `output` exists when it has finished."""

    kind: str
    dataset: str
    method: str
    seed: int
    argv: list[str]
    needs: list["Stage"] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # config files whose text is part of the key
    key: str = ""
    folder: Path = Path()

    @property
    def label(self) -> str:
        return "/".join(p for p in (self.dataset, self.kind, self.method, f"seed{self.seed}" if self.method else "")
                        if p)

    @property
    def output(self) -> Path:
        if self.kind == "generator":  # LightningCLI's `xmgie fit`, into the stage folder's run/
            return self.folder / "run/checkpoints/last.ckpt"
        return self.folder / PIPELINE_STAGES[self.kind].output

    def record(self) -> dict[str, Any]:
        path = self.folder / "stage.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def status(self) -> str:
        """done | running | queued (a submitted job waiting) | failed | blocked | interrupted | pending."""
        rec = self.record()
        state = rec.get("status", "pending")
        if state in ("running", "queued") and rec.get("slurm_job"):  # its process lives on another node
            return state if slurm_job_state(rec["slurm_job"]) in SLURM_ALIVE else "interrupted"
        if state == "queued" and not _alive(int(rec.get("job") or 0)):  # a local submitit job, by its pid
            return "interrupted"
        if state == "running" and not _alive(rec.get("pid")):
            return "interrupted"
        if state == "done" and not self.output.exists():
            return "pending"
        return state


def _alive(pid: int | None) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: os.kill's answer


SLURM_ALIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED")


def slurm_job_state(job: str) -> str | None:
    """The state SLURM reports for `job` (PENDING, RUNNING, …), or None once it has left the queue (or where
    there is no squeue)."""
    try:
        out = subprocess.run(["squeue", "--noheader", "--jobs", job, "--format", "%T"], capture_output=True,
                             text=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def write_record(stage: Stage, rec: dict) -> None:
    tmp = stage.folder / "stage.json.tmp"
    tmp.write_text(json.dumps(rec, indent=2) + "\n")
    tmp.replace(stage.folder / "stage.json")



def status_lines(stages: list[Stage], skipped: dict[str, str]) -> list[str]:
    lines = []
    for s in stages:
        rec = s.record()
        wall = f"{rec['wall_time_s']} s" if "wall_time_s" in rec else ""
        log = f" log: {rec['log']}" if s.status() == "failed" else ""
        lines.append(f"{s.status():11s} {s.label:42s} {wall:>10s}  {s.folder}{log}")
    lines += [f"{'not run':11s} {d}: {why}" for d, why in skipped.items()]
    return lines
