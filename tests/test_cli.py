import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmgie.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xmgie.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_edit_writes_an_image_of_the_input_size(smoke_run, image, tmp_path, capsys):
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((40, 56), 255, np.uint8)).save(mask)
    out = tmp_path / "out.png"
    main(["edit", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--image", str(image),
          "--prompt", "make the circle red", "--mask", str(mask), "--out", str(out), "--steps", "2"])
    assert Image.open(out).size == (56, 40)
    assert "no instruction expander" in capsys.readouterr().err


def test_edit_with_guidance_scales_keeps_the_input_shape(smoke_run, image, tmp_path):
    out = tmp_path / "o.png"
    main(["edit", "--ckpt", str(smoke_run / "checkpoints" / "best.ckpt"), "--image", str(image), "--prompt", "x",
          "--out", str(out), "--steps", "1", "--guidance-text", "2", "--guidance-image", "1.5"])
    assert np.asarray(Image.open(out)).shape == (40, 56, 3)


@pytest.mark.parametrize("case", ["missing_image", "unreadable_image", "rgb_mask", "missing_ckpt", "foreign_ckpt",
                                  "garbage_ckpt"])
def test_edit_errors_are_one_line_with_status_2(case, smoke_run, image, tmp_path):
    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    args = {"--ckpt": str(ckpt), "--image": str(image), "--prompt": "make it red"}
    if case == "missing_image":
        args["--image"] = str(tmp_path / "nope.png")
    elif case == "unreadable_image":
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        args["--image"] = str(bad)
    elif case == "rgb_mask":
        args["--mask"] = str(image)
    elif case == "missing_ckpt":
        args["--ckpt"] = str(tmp_path / "none.ckpt")
    elif case == "foreign_ckpt":
        foreign = tmp_path / "foreign.ckpt"
        torch.save({"state_dict": {}, "hyper_parameters": {}}, foreign)
        args["--ckpt"] = str(foreign)
    elif case == "garbage_ckpt":
        garbage = tmp_path / "garbage.ckpt"
        garbage.write_bytes(b"not a checkpoint")
        args["--ckpt"] = str(garbage)
    proc = run_cli("edit", *[x for kv in args.items() for x in kv], "--out", str(tmp_path / "o.png"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmgie: error:") and "Traceback" not in proc.stderr
    expected = {"missing_image": "image not found", "unreadable_image": "cannot read image",
                "rgb_mask": "single-channel", "missing_ckpt": "checkpoint not found",
                "foreign_ckpt": "not an xMGIE generator checkpoint", "garbage_ckpt": "cannot read checkpoint"}[case]
    assert expected in lines[0]


def test_evaluate_prints_and_writes_json(smoke_run, tmp_path, capsys):
    out = tmp_path / "res.json"
    main(["evaluate", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--dataset", "shapes",
          "--split", "test", "--limit", "6", "--steps", "2", "--batch-size", "4", "--out", str(out)])
    captured = capsys.readouterr()
    printed = json.loads(captured.out.strip().splitlines()[-1])
    metrics = printed["metrics"]
    assert printed["n_images"] == metrics["n_images"] == 6 and json.loads(out.read_text())["metrics"] == metrics
    for key in ("psnr", "ssim", "psnr_source", "psnr_outside_mask", "psnr_gain", "is", "fid", "lpips"):
        assert isinstance(metrics[key], float)
    assert metrics["psnr_gain"] == pytest.approx(metrics["psnr"] - metrics["psnr_source"], abs=1e-3)
    # no backbone files in the tests' weights folder: every learned metric says so, in the file and on stderr
    assert printed["uncalibrated"] == ["fid", "is", "lpips", "lpips_outside_mask"]
    assert "UNCALIBRATED" in captured.err
    assert printed["checkpoint"]["sha256"] and printed["protocol"] == "targets" and printed["seed"] == 0


def test_evaluate_strict_weights_names_the_missing_file(smoke_run):
    proc = run_cli("evaluate", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--limit", "2",
                   "--strict-weights")
    assert proc.returncode == 2 and "xmgie weights fetch inception" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_weights_status_and_verify(tmp_path):
    proc = run_cli("weights", "status")
    assert proc.returncode == 0 and "inception" in proc.stdout and "missing" in proc.stdout
    proc = run_cli("weights", "verify", "alexnet")
    assert proc.returncode == 2 and "not verified: alexnet" in proc.stderr
    proc = run_cli("weights", "fetch", "nosuch")
    assert proc.returncode == 2 and "unknown weights 'nosuch'" in proc.stderr


def test_evaluate_unknown_dataset_is_an_error(smoke_run):
    proc = run_cli("evaluate", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--dataset", "imagenet")
    assert proc.returncode == 2 and "unknown dataset 'imagenet'" in proc.stderr


def test_data_preview_writes_a_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    main(["data", "preview", "--dataset", "shapes", "--out", str(out), "--n", "3", "--resolution", "32"])
    img = Image.open(out)
    assert img.size[0] >= 3 * 32 * 4 and img.size[1] > 3 * 32 * 4
    assert capsys.readouterr().out.count("P: ") == 3
