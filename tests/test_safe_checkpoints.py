"""Checkpoints safe to share: nothing in a file runs when it is loaded, malformed files are one-line errors, and an
exported safetensors folder edits exactly like its checkpoint."""
import fractions
import json
import os

import pytest
import torch

from data_modules.base import collate
from data_modules.synthetic import ShapesDataModule
from tests.test_cli import run_cli
from xmgie.checkpoints import trust_file
from xmgie.editor import load_generator_module
from xmgie.errors import UserError


class Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def evil(smoke_run, tmp_path):
    ckpt = torch.load(smoke_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], "note": Payload(marker)}}, path)
    return path, marker


def _one_line_refusal(proc, marker):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "refused to load" in proc.stderr and "--trust-checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists()  # nothing in the file ran


def test_edit_and_evaluate_refuse_a_checkpoint_that_would_run_code(evil, tmp_path):
    from PIL import Image

    path, marker = evil
    img = tmp_path / "in.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(img)
    _one_line_refusal(run_cli("edit", "--ckpt", str(path), "--image", str(img), "--prompt", "x"), marker)
    _one_line_refusal(run_cli("evaluate", "--ckpt", str(path), "--limit", "2", "--no-inception", "--no-lpips"),
                      marker)


def test_the_expander_loader_and_init_from_refuse_it_too(evil, smoke_run, tmp_path):
    from xmgie.conditioning.expander import load_expander
    from xmgie.training.lit_generator import XMGIEModule
    from xmgie.training.init_from import load_base

    path, marker = evil
    expander = tmp_path / "expander.pt"
    torch.save({"kind": "xmgie-expander", "config": {}, "vocab": Payload(marker)}, expander)
    with pytest.raises(UserError, match="refused to load"):
        load_expander(expander)
    hp = torch.load(smoke_run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    module = XMGIEModule(**hp)
    with pytest.raises(UserError, match="refused to load"):
        load_base(module, path, module.hparams["generator"])
    assert not marker.exists()


def test_trust_checkpoint_loads_a_file_you_made_with_other_objects(smoke_run, tmp_path):
    ckpt = torch.load(smoke_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    path = tmp_path / "mine.ckpt"
    torch.save({**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"], "note": fractions.Fraction(1, 3)}}, path)
    with pytest.raises(UserError, match="refused to load"):
        load_generator_module(path)
    proc = run_cli("evaluate", "--ckpt", str(path), "--trust-checkpoint", "--limit", "2", "--batch-size", "2",
                   "--no-inception", "--no-lpips", "--out", str(tmp_path / "r.json"))
    # past unpickling (the file is trusted), the unknown hyper-parameter is still refused in one line
    assert proc.returncode == 2 and "refused" not in proc.stderr and "hyper-parameters do not build" in proc.stderr
    trust_file(path)
    with pytest.raises(UserError, match="hyper-parameters do not build"):  # an unknown field is still checked
        load_generator_module(path)


@pytest.mark.parametrize("content", ["list", "no_marker", "no_state", "other_kind", "wrong_shape", "missing_key"])
def test_a_malformed_checkpoint_is_one_line(content, smoke_run, tmp_path):
    ckpt = torch.load(smoke_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    state = dict(ckpt["state_dict"])
    first = next(iter(state))
    bad = {"list": [1, 2, 3],
           "no_marker": {k: v for k, v in ckpt.items() if k != "xmgie"},
           "no_state": {k: v for k, v in ckpt.items() if k != "state_dict"},
           "other_kind": {**ckpt, "xmgie": {"kind": "something-else"}},
           "wrong_shape": {**ckpt, "state_dict": {**state, first: torch.zeros(3, 1)}},
           "missing_key": {**ckpt, "state_dict": {k: v for k, v in state.items() if k != first}}}[content]
    path = tmp_path / f"{content}.ckpt"
    torch.save(bad, path)
    with pytest.raises(UserError) as err:
        load_generator_module(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    if content == "wrong_shape":
        proc = run_cli("evaluate", "--ckpt", str(path), "--limit", "2", "--no-inception", "--no-lpips")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "weights do not fit" in proc.stderr


def test_export_then_load_edits_bit_for_bit_and_serves_as_a_base(smoke_run, tmp_path):
    from xmgie.cli import main
    from xmgie.training.lit_generator import XMGIEModule
    from xmgie.training.init_from import load_base

    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "editor")])
    folder = tmp_path / "editor"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["weights"] == "ema" and config["global_step"] == 4 and config["xmgie"]["dataset"] == "shapes"
    assert "library_name: xmgie" in (folder / "README.md").read_text()
    original, exported = load_generator_module(ckpt), load_generator_module(folder)
    assert exported.ema is None
    batch = collate([ShapesDataModule(resolution=16).dataset("test")[i] for i in range(4)])
    torch.testing.assert_close(original.edit(batch, seed=3), exported.edit(batch, seed=3), atol=0, rtol=0)
    module = XMGIEModule(**{**torch.load(ckpt, weights_only=True)["hyper_parameters"],
                            "modules": {"pfb": {"enabled": True, "layers": ["mid"]}}})
    info = load_base(module, folder, module.hparams["generator"])
    for k, v in original.ema.state_dict().items():  # the exported (EMA) weights start generator and EMA
        assert torch.equal(module.generator.state_dict()[k], v) and torch.equal(module.ema.state_dict()[k], v)
    assert info["global_step"] == 4 and len(info["sha256"]) == 64
    from xmgie.export import export_editor

    with pytest.raises(UserError, match="not empty"):
        export_editor(ckpt, folder)


def test_the_lightweight_editor_edits_exactly_as_the_training_module(smoke_run, tmp_path):
    from xmgie.cli import main
    from xmgie.editor import DiffusionEditor, Editor, load_editor

    ckpt = smoke_run / "checkpoints" / "last.ckpt"
    main(["export", "--ckpt", str(ckpt), "--out", str(tmp_path / "editor")])
    module = load_generator_module(ckpt)
    batch = collate([ShapesDataModule(resolution=16).dataset("test")[i] for i in range(4)])
    expected = module.edit(batch, seed=5)
    for path in (ckpt, tmp_path / "editor"):
        editor = load_editor(path)
        assert isinstance(editor, DiffusionEditor) and isinstance(editor, Editor)
        assert editor.data_info["resolution"] == module.data_info["resolution"]
        torch.testing.assert_close(editor.edit(batch, seed=5), expected, atol=0, rtol=0)
    bad = torch.load(ckpt, weights_only=True)
    first = next(k for k in bad["state_dict"] if k.startswith("ema."))
    bad["state_dict"].pop(first)
    torch.save(bad, tmp_path / "bad.ckpt")
    with pytest.raises(UserError, match=r"weights do not fit the model \(missing"):
        load_editor(tmp_path / "bad.ckpt")
