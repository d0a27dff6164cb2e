import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


def test_gpu_benchmark_script_runs_its_smoke_shape_on_a_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", str(REPO / "benchmarks/gpu.sh"), "--smoke", "--out", str(out)],
                          env={**os.environ, "PY": sys.executable}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    variants = result["variants"]
    assert result["smoke"] and result["shape"] == "ip2p-mini"
    assert set(variants) == {"xmgie", "base", "xmgie_pixel_rows_1"}
    assert sorted(variants["xmgie"]["modules"]) == ["cam", "gb", "ie", "pfb"]
    assert variants["base"]["modules"] == [] and variants["xmgie_pixel_rows_1"]["pixel_rows"] == 1
    assert result["gb_1024"]["gb_s"] > 0 and result["gb_1024"]["ratio_to_fixed_blur"] > 0
    for v in variants.values():
        assert v["training_bf16"]["median_step_s"] > 0 and v["training_bf16"]["steps_timed"] == 2
    for v in (variants["xmgie"], variants["base"]):
        assert all(e["s_per_image"] > 0 for e in v["editing_bf16"].values())
        assert set(v["host_syncs"].values()) == {"not checked: no CUDA device"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_gpu_benchmark_needs_a_gpu_or_smoke():
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_gpu.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "no CUDA device" in proc.stderr and "--smoke" in proc.stderr
