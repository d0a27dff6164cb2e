"""`xmgie run --executor slurm` against stand-ins for sbatch and squeue (scripts on PATH that record their calls):
one job per stage with its needs as dependencies, a table job after all of them, job scripts that run their
stage as a local run would, and resubmission of only what is neither done nor queued."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from xmgie.cli import main

SBATCH = """#!/bin/bash
# records its arguments, answers the next job id (--parsable)
n=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100) + 1 )); echo $n > "$FAKE_SLURM/next"
echo "$n $*" >> "$FAKE_SLURM/calls"
echo "$n;cluster"
"""
SQUEUE = """#!/bin/bash
# every job is PENDING while $FAKE_SLURM/alive exists, else gone from the queue
[ -e "$FAKE_SLURM/alive" ] && echo PENDING
exit 0
"""
SPEC = """name: slurm_test
caption: one GAN baseline on shapes
layout: rows
columns: [psnr]
results: "results/{dataset}/{method}.json"
datasets:
  - {name: shapes, label: shapes, columns: [psnr]}
methods:
  - {name: hifill, label: HiFill}
"""


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    state, bin_ = tmp_path / "slurm", tmp_path / "bin"
    state.mkdir()
    bin_.mkdir()
    for name, text in (("sbatch", SBATCH), ("squeue", SQUEUE)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    monkeypatch.chdir(REPO)
    return state


def _calls(state: Path) -> list[tuple[str, dict[str, str], str]]:
    """(job id, {option: value}, script) per sbatch call, in order."""
    out = []
    for line in (state / "calls").read_text().splitlines():
        job, *args = line.split()
        opts = dict(a[2:].split("=", 1) for a in args[:-1] if a.startswith("--") and "=" in a)
        out.append((job, opts, args[-1]))
    return out


def test_stages_become_dependent_jobs_that_run_their_stage(slurm, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    work, results = tmp_path / "pipe", tmp_path / "res"
    argv = ["run", "--spec", str(spec), "--budget", "smoke", "--work", str(work), "--results", str(results)]
    main([*argv, "--executor", "slurm", "--sbatch", "--partition=test --time=1:00:00"])
    calls = _calls(slurm)
    labels = [opts["job-name"].removeprefix("xmgie:") for _, opts, _ in calls]
    assert labels == ["shapes/identity", "shapes/attributes", "shapes/baseline/hifill/seed0",
                      "shapes/evaluate/hifill/seed0", "table"]
    ids = {label: job for label, (job, _, _) in zip(labels, calls)}
    deps = {label: opts.get("dependency") for label, (_, opts, _) in zip(labels, calls)}
    assert deps["shapes/identity"] is None and deps["shapes/baseline/hifill/seed0"] is None
    needs = {ids["shapes/identity"], ids["shapes/attributes"], ids["shapes/baseline/hifill/seed0"]}
    assert deps["shapes/evaluate/hifill/seed0"].startswith("afterok:")
    assert set(deps["shapes/evaluate/hifill/seed0"].split(":")[1:]) == needs
    assert deps["table"] == "afterany:" + ":".join(sorted(ids[label] for label in labels[:-1]))
    assert all(opts["partition"] == "test" and opts["time"] == "1:00:00" for _, opts, _ in calls)
    records = {p.parent.name.split("-")[0]: json.loads(p.read_text()) for p in work.rglob("stage.json")}
    assert records["identity"]["status"] == "queued" and records["identity"]["slurm_job"] == ids["shapes/identity"]

    # SLURM runs the identity job: the stage runs as a local run would and records its job
    script = Path(calls[0][2])
    proc = subprocess.run(["bash", str(script)], env={**os.environ, "SLURM_JOB_ID": ids["shapes/identity"]},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((script.parent / "stage.json").read_text())
    assert record["status"] == "done" and record["slurm_job"] == ids["shapes/identity"]
    assert (script.parent / "encoder.pt").is_file() and "identity" in (script.parent / "log.txt").read_text()

    # resubmitted while the other jobs still wait: nothing new but the table job
    (slurm / "alive").touch()
    main([*argv, "--executor", "slurm"])
    assert [opts["job-name"] for _, opts, _ in _calls(slurm)[5:]] == ["xmgie:table"]
    main([*argv, "--status"])
    status = capsys.readouterr().out
    assert re.search(r"done\s+shapes/identity", status) and re.search(r"queued\s+shapes/attributes", status)

    # the queue was cancelled: the rest is submitted again, without waiting for the identity stage (done)
    (slurm / "alive").unlink()
    main([*argv, "--executor", "slurm"])
    again = _calls(slurm)[6:]
    assert [opts["job-name"] for _, opts, _ in again][:3] == [
        "xmgie:shapes/attributes", "xmgie:shapes/baseline/hifill/seed0", "xmgie:shapes/evaluate/hifill/seed0"]
    assert set(again[2][1]["dependency"].split(":")[1:]) == {again[0][0], again[1][0]}


def test_a_stage_whose_needs_are_not_done_refuses_to_run(slurm, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--spec", str(spec), "--budget", "smoke", "--work", str(tmp_path / "pipe"), "--results",
              str(tmp_path), "--stage", "shapes/evaluate/hifill/seed0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "evaluate/hifill/seed0 needs" in err and "shapes/identity" in err and err.strip().endswith("not done")
