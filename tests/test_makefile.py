import subprocess

from tests.conftest import REPO


def _dry_run(run_dir) -> str:
    proc = subprocess.run(["make", "-n", "train", f"RUN={run_dir}"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_train_resumes_from_last_checkpoint_when_present(tmp_path):
    assert "--ckpt_path" not in _dry_run(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    out = _dry_run(tmp_path)
    assert f"--ckpt_path={tmp_path}/checkpoints/last.ckpt" in out
    assert f"--trainer.default_root_dir={tmp_path}" in out and "experiments/data/shapes.yaml" in out


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / "README.md").read_text()
    assert "make test" in (REPO / ".ci" / "run").read_text()
