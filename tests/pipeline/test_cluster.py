"""`xmgie run --executor slurm` through submitit against stand-ins for sbatch, srun and squeue (scripts on PATH):
one job per stage with its needs as dependencies and the budget's resources, a table job after all of them, a
job script that runs its stage as a local run would, and resubmission of only what is neither done nor queued.
The submitit local executor (the same jobs as real subprocesses) is tested in test_runner.py."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from xmgie.cli import main
from xmgie.errors import UserError
from xmgie.pipeline.cluster import sbatch_options, stage_resources

SBATCH = """#!/bin/bash
# keeps the job script as $FAKE_SLURM/job<id>.sh and answers as sbatch does
n=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100) + 1 )); echo $n > "$FAKE_SLURM/next"
cp "$1" "$FAKE_SLURM/job$n.sh"
echo "Submitted batch job $n"
"""
SRUN = """#!/bin/bash
# runs the command after srun's options here, as the one task of job $SLURM_JOB_ID
while [[ "$1" == --* ]]; do case "$1" in --unbuffered) shift;; *) shift 2;; esac; done
export SLURM_NTASKS=1 SLURM_JOB_NUM_NODES=1 SLURM_NODEID=0 SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_JOB_NODELIST=localhost
exec "$@"
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
    for name, text in (("sbatch", SBATCH), ("srun", SRUN), ("squeue", SQUEUE)):
        (bin_ / name).write_text(text)
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    monkeypatch.chdir(REPO)
    return state


def _jobs(state: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """{job name: (job id, {#SBATCH option: value})} of every submitted job script, in submission order."""
    out = {}
    for script in sorted(state.glob("job*.sh"), key=lambda p: int(p.stem[3:])):
        opts = dict(m.groups() for m in re.finditer(r"^#SBATCH --([\w-]+)=(\S+)$", script.read_text(), re.M))
        out[opts["job-name"].removeprefix("xmgie:")] = (script.stem[3:], opts)
    return out


def test_stages_become_dependent_jobs_that_run_their_stage(slurm, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    work, results = tmp_path / "pipe", tmp_path / "res"
    argv = ["run", "--spec", str(spec), "--budget", "smoke", "--work", str(work), "--results", str(results)]
    main([*argv, "--executor", "slurm", "--sbatch", "--partition=test --time=1:00:00"])
    jobs = _jobs(slurm)
    assert list(jobs) == ["shapes/identity", "shapes/attributes", "shapes/baseline/hifill/seed0",
                          "shapes/evaluate/hifill/seed0", "table"]
    ids = {label: job for label, (job, _) in jobs.items()}
    deps = {label: opts.get("dependency") for label, (_, opts) in jobs.items()}
    assert deps["shapes/identity"] is None and deps["shapes/baseline/hifill/seed0"] is None
    needs = {ids["shapes/identity"], ids["shapes/attributes"], ids["shapes/baseline/hifill/seed0"]}
    assert deps["shapes/evaluate/hifill/seed0"].startswith("afterok:")
    assert set(deps["shapes/evaluate/hifill/seed0"].split(":")[1:]) == needs
    assert jobs["shapes/evaluate/hifill/seed0"][1]["kill-on-invalid-dep"] == "yes"  # a failed need cancels it
    assert deps["table"] == "afterany:" + ":".join(sorted(ids[label] for label in list(jobs)[:-1]))
    assert all(opts["partition"] == "test" and opts["time"] == "1:00:00" for _, opts in jobs.values())
    records = {p.parent.name.split("-")[0]: json.loads(p.read_text()) for p in work.rglob("stage.json")}
    assert records["identity"]["status"] == "queued" and records["identity"]["slurm_job"] == ids["shapes/identity"]

    # SLURM runs the identity job: submitit's payload runs the stage as a local run would and records its job
    script = slurm / f"job{ids['shapes/identity']}.sh"
    proc = subprocess.run(["bash", str(script)], env={**os.environ, "SLURM_JOB_ID": ids["shapes/identity"]},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = next(work.glob("shapes/identity-*"))
    record = json.loads((folder / "stage.json").read_text())
    assert record["status"] == "done" and record["slurm_job"] == ids["shapes/identity"]
    assert record["job"] == ids["shapes/identity"]  # the job's id stays in the record: a running stage is held
    assert (folder / "encoder.pt").is_file() and "identity" in (folder / "log.txt").read_text()

    # submitted again while the other jobs still wait (the baseline's job already running its stage): nothing new
    # but the table job
    (slurm / "alive").touch()
    baseline = next(work.glob("shapes/baseline-*")) / "stage.json"
    baseline.write_text(json.dumps({**json.loads(baseline.read_text()), "status": "running", "pid": 1}))
    for old in slurm.glob("job*.sh"):
        old.unlink()
    main([*argv, "--executor", "slurm"])
    assert list(_jobs(slurm)) == ["table"]
    main([*argv, "--status"])
    status = capsys.readouterr().out
    assert re.search(r"done\s+shapes/identity", status) and re.search(r"queued\s+shapes/attributes", status)

    # the queue was cancelled: the rest is submitted again, without waiting for the identity stage (done)
    (slurm / "alive").unlink()
    for old in slurm.glob("job*.sh"):
        old.unlink()
    main([*argv, "--executor", "slurm"])
    again = _jobs(slurm)
    assert list(again) == ["shapes/attributes", "shapes/baseline/hifill/seed0", "shapes/evaluate/hifill/seed0",
                           "table"]
    evaluate_deps = again["shapes/evaluate/hifill/seed0"][1]["dependency"].split(":")[1:]
    assert set(evaluate_deps) == {again["shapes/attributes"][0], again["shapes/baseline/hifill/seed0"][0]}


def test_the_budgets_resources_reach_each_kind_of_job(slurm, tmp_path):
    budget = {"resources": {"default": {"timeout_min": 90, "cpus_per_task": 4},
                            "generator": {"gpus_per_node": 1, "timeout_min": 600, "slurm_partition": "gpu"}}}
    assert stage_resources(budget, "evaluate") == {"timeout_min": 90, "cpus_per_task": 4}
    assert stage_resources(budget, "generator") == {"timeout_min": 600, "cpus_per_task": 4, "gpus_per_node": 1,
                                                    "slurm_partition": "gpu"}
    assert stage_resources({}, "identity")["timeout_min"] == 7 * 24 * 60  # not submitit's 5 minutes
    from xmgie.pipeline.cluster import make_executor

    for cluster in ("slurm", "local"):
        with pytest.raises(UserError, match="budget resources: .*gpus_per_nod"):
            make_executor(cluster, tmp_path, {"gpus_per_nod": 1}, {}, [])


def test_sbatch_options_and_a_login_node_without_srun(tmp_path, monkeypatch):
    assert sbatch_options("--partition=gpu --time=24:00:00 --exclusive") == {
        "partition": "gpu", "time": "24:00:00", "exclusive": True}
    with pytest.raises(UserError, match="--name=value"):
        sbatch_options("partition=gpu")
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun anywhere
    from xmgie.pipeline.cluster import make_executor

    with pytest.raises(UserError, match="srun"):
        make_executor("slurm", tmp_path, {}, {}, [])


def test_a_stage_whose_needs_are_not_done_refuses_to_run(slurm, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--spec", str(spec), "--budget", "smoke", "--work", str(tmp_path / "pipe"), "--results",
              str(tmp_path), "--stage", "shapes/evaluate/hifill/seed0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "evaluate/hifill/seed0 needs" in err and "shapes/identity" in err and err.strip().endswith("not done")
