import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# An empty weights folder: a user's downloaded backbones never change what the tests see.
os.environ["XMGIE_WEIGHTS"] = tempfile.mkdtemp(prefix="xmgie-weights-")
# Dataset index caches of the tests stay out of the user's cache folder.
os.environ["XMGIE_CACHE"] = tempfile.mkdtemp(prefix="xmgie-cache-")
REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "experiments" / "smoke.yaml"


def fit(root: Path, *overrides: str) -> Path:
    """Train the smoke config in-process into `root`; returns the run folder."""
    from xmgie.cli import main

    main(["fit", "--config", str(SMOKE), f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
          *overrides])
    return root


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished 4-step smoke run (micro model, 16 px shapes), shared by the CLI tests."""
    return fit(tmp_path_factory.mktemp("smoke_run"))
