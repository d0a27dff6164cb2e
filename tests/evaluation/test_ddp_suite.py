"""The whole suite on two gloo CPU processes gives the values of one process on the same samples."""
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO

WORKER = [sys.executable, "-m", "tests.evaluation.suite_worker"]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_two_ranks_equal_one_process(tmp_path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": _free_port(), "OMP_NUM_THREADS": "1"}
    single, ddp = tmp_path / "single.json", tmp_path / "ddp.json"
    subprocess.run([*WORKER, str(single), "0", "1"], cwd=REPO, env=env, check=True, timeout=300)
    ranks = [subprocess.Popen([*WORKER, str(ddp), str(r), "2"], cwd=REPO, env=env) for r in range(2)]
    assert [p.wait(timeout=300) for p in ranks] == [0, 0]
    one, two = json.loads(single.read_text()), json.loads(ddp.read_text())
    assert set(one) == set(two) >= {"is", "fid", "lpips", "ssim", "psnr", "aa", "ips", "psnr_gain"}
    assert one["n_images"] == two["n_images"] == 8
    for key in one:
        assert two[key] == pytest.approx(one[key], rel=1e-6, abs=1e-9), key
