"""The web demo's logic without a server (`make demo`; the served page: test_demo_served.py)."""
import json
import shlex

import numpy as np
import pytest
from PIL import Image

from xmgie.demo import DemoSettings, check_photo, examples, overlay, painted_mask
from xmgie.errors import UserError


def test_painted_layers_become_one_mask_of_the_photo_size():
    a = np.zeros((20, 30, 4), np.uint8)
    a[2:6, 3:9, 3] = 255
    b = np.zeros((10, 15, 4), np.uint8)  # a layer at half the size: resized to the photo
    b[8:10, 0:2, 3] = 128
    mask = np.asarray(painted_mask([Image.fromarray(a), None, Image.fromarray(b)], (30, 20)))
    expected = np.zeros((20, 30), np.uint8)
    expected[2:6, 3:9] = 255
    expected[16:20, 0:4] = 255
    assert np.array_equal(mask, expected)
    assert painted_mask([Image.fromarray(np.zeros((20, 30, 4), np.uint8))], (30, 20)) is None


def test_photos_the_demo_refuses_and_the_modes_it_converts():
    with pytest.raises(UserError, match="upload a photo"):
        check_photo(None)
    with pytest.raises(UserError, match="between 8 and 4096"):
        check_photo(Image.new("RGB", (5000, 10)))
    assert check_photo(Image.new("I;16", (12, 10))).mode == "RGB"
    assert check_photo(Image.new("CMYK", (12, 10))).mode == "RGB"
    tinted = np.asarray(overlay(Image.new("RGB", (4, 4)), Image.new("L", (4, 4), 255)))
    assert (tinted == [128, 32, 32]).all()


def test_the_settings_command_spells_every_setting_once():
    s = DemoSettings("make it red", "paint the circle red", "painted", 7, 12, 3.0, None, ["gb", "cam"])
    args = shlex.split(s.command("run/last.ckpt", "run/expander.pt"))
    assert args[:2] == ["xmgie", "edit"] and args[args.index("--mask") + 1] == "mask.png"
    assert args[args.index("--instruction") + 1] == "paint the circle red" and "--expander" not in args  # given as is
    assert args[args.index("--modules-off") + 1] == "gb,cam" and "--guidance-image" not in args
    auto = shlex.split(DemoSettings("make it red", mask="auto").command("c.ckpt", "e.pt"))
    assert auto[auto.index("--mask") + 1] == "auto" and auto[auto.index("--expander") + 1] == "e.pt"
    assert "--mask-net" not in auto and "--mask-net" not in args  # the relevance map; a painted mask
    learned = shlex.split(DemoSettings("make it red", mask="auto").command("c.ckpt", None, mask_net="m.pt"))
    assert learned[learned.index("--mask-net") + 1] == "m.pt"


def test_the_bundled_examples_exist():
    listed = examples()
    assert len(listed) >= 3 and all(Image.open(path).size == (128, 128) and prompt for path, prompt in listed)


def test_the_demo_edits_through_the_pipeline_and_reports_each_ddim_step(smoke_run, tmp_path):
    from xmgie.demo import DemoEditor
    from xmgie.inference import EditPipeline

    ckpt = str(smoke_run / "checkpoints" / "last.ckpt")
    demo = DemoEditor(EditPipeline.from_checkpoint(ckpt), ckpt, out_dir=tmp_path)
    photo = Image.fromarray((np.random.default_rng(1).random((24, 20, 3)) * 255).astype(np.uint8))
    steps = []
    result = demo.edit(photo, [], DemoSettings("make it red", mask="anywhere", steps=3),
                       on_step=lambda *s: steps.append(s))
    assert steps == [(1, 3), (2, 3), (3, 3)] and result.image.size == (20, 24)
    assert json.loads(open(result.files[2]).read())["mask_source"] == "anywhere"
    with pytest.raises(UserError, match="paint where"):
        demo.edit(photo, [], DemoSettings("make it red"))
    with pytest.raises(UserError, match="no module ie"):
        demo.edit(photo, [], DemoSettings("make it red", mask="anywhere", modules_off=["ie"]))


def test_without_gradio_the_demo_says_how_to_install_it(monkeypatch):
    import sys

    from xmgie.demo import launch

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    with pytest.raises(UserError, match=r"pip install -e '\.\[demo\]'"):
        launch("any.ckpt")
