"""The expander stage end to end (train, held-out metrics with and without the image, file), the generator
trained on the expander's instructions, and `xmgie edit --expander` / `xmgie expander expand` (and their old
spellings, `--mllm` / `xmgie mllm`)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import fit
from xmgie.cli import main
from xmgie.conditioning.expander import ExpanderConfig, load_expander
from xmgie.training.lit_expander import train_instruction_expander

SMALL = ExpanderConfig(image_size=16, patch_size=4, vision_width=32, vision_layers=1, vision_heads=2, embed_dim=32,
                       prefix_tokens=2, lm_width=32, lm_layers=1, lm_heads=2, max_instruction_tokens=40)


@pytest.fixture(scope="module")
def expander_file(tmp_path_factory):
    import data_modules.synthetic as synthetic

    out = tmp_path_factory.mktemp("expander") / "expander.pt"
    original = synthetic.ShapesDataModule.__init__

    def tiny(self, resolution=16, batch_size=8, num_workers=0, **kw):
        original(self, resolution=16, batch_size=8, num_workers=0, train_size=64, val_size=4, test_size=8)

    synthetic.ShapesDataModule.__init__ = tiny
    try:
        result = train_instruction_expander("shapes", out, steps=3, batch_size=8, eval_images=8, config=SMALL)
    finally:
        synthetic.ShapesDataModule.__init__ = original
    return out, result


def test_stage_reports_held_out_metrics_with_and_without_the_image(expander_file):
    out, result = expander_file
    for kind in ("visual", "zeroed_prefix"):
        m = result["held_out"][kind]
        assert m["images"] == 8 and 0 <= m["token_accuracy"] <= 1 and 0 <= m["bleu"] <= 100
        assert len(m["examples"]) == 3 and m["examples"][0]["reference"]
    assert result["held_out"]["visual"]["loss"] != result["held_out"]["zeroed_prefix"]["loss"]
    assert json.loads(out.with_suffix(".json").read_text())["held_out"] == result["held_out"]
    assert load_expander(out).info["held_out"] == result["held_out"]


def test_generator_trains_on_the_expanders_instructions(expander_file, tmp_path):
    out, _ = expander_file
    run = fit(tmp_path / "run", "--model.text_source=expander", f"--model.expander={out}")
    from xmgie.editor import load_generator_module

    module = load_generator_module(run / "checkpoints" / "last.ckpt")
    assert module.text_source == "expander" and module.expander_path == str(out)
    src = torch.zeros(2, 3, 16, 16)
    texts = module.conditioning_texts({"source": src, "prompt": ["make the circle red", "make it blue"]})
    assert texts == load_expander(out).generate(src, ["make the circle red", "make it blue"])


def test_text_source_expander_needs_a_file():
    from xmgie.training.lit_generator import XMGIEModule

    with pytest.raises(ValueError, match="make train-expander"):
        XMGIEModule(text_source="expander")


def test_edit_and_expand_commands_use_the_expander(expander_file, smoke_run, tmp_path, capsys):
    out, _ = expander_file
    image = tmp_path / "in.png"
    Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(image)
    main(["mllm", "expand", "--mllm", str(out), "--image", str(image), "--prompt", "make the circle red"])  # old names
    expanded = capsys.readouterr().out.strip()
    main(["edit", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--image", str(image), "--prompt",
          "make the circle red", "--expander", str(out), "--out", str(tmp_path / "o.png"), "--steps", "1"])
    err = capsys.readouterr().err
    assert f"instruction: {expanded!r} (expanded by {out})" in err
    assert Image.open(tmp_path / "o.png").size == (24, 20)
    with pytest.raises(SystemExit) as exit_:
        main(["edit", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--image", str(image), "--prompt",
              "x", "--expander", str(tmp_path / "none.pt")])
    assert exit_.value.code == 2 and "make train-expander" in capsys.readouterr().err
