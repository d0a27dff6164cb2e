import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the demo's tests call nothing outside this machine
# An empty weights folder: a user's downloaded backbones never change what the tests see.
os.environ["XMGIE_WEIGHTS"] = tempfile.mkdtemp(prefix="xmgie-weights-")
# Dataset index caches of the tests stay out of the user's cache folder.
os.environ["XMGIE_CACHE"] = tempfile.mkdtemp(prefix="xmgie-cache-")
for _folder in (os.environ["XMGIE_WEIGHTS"], os.environ["XMGIE_CACHE"]):
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)
REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke.yaml"


def fit(root: Path, *overrides: str) -> Path:
    """Train the smoke config in-process into `root`; returns the run folder."""
    from xmgie.cli import main

    main(["fit", "--config", str(SMOKE), f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
          *overrides])
    return root


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Path:
    """A folder for the runs one test module shares, removed when its tests end unless one failed: with
    `tmp_path_retention_policy = "failed"` the suite's peak use of disk stays a few hundred MB."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    failed = request.session.testsfailed
    yield path
    if request.session.testsfailed == failed:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished 4-step smoke run (micro model, 16 px shapes), shared by the CLI tests."""
    return fit(tmp_path_factory.mktemp("smoke_run"))


@pytest.fixture(scope="session")
def demo_server(smoke_run):
    """The web demo served on a free local port over the smoke run's checkpoint: (url, checkpoint)."""
    import socket

    from xmgie.demo import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ckpt = str(smoke_run / "checkpoints" / "last.ckpt")
    app = launch(ckpt, device="cpu", port=port, block=False)
    yield f"http://127.0.0.1:{port}/", ckpt
    app.close()
