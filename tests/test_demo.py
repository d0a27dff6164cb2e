"""The web demo (`make demo`): its logic without a server, then the served page driven by gradio_client."""
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
    assert args[args.index("--instruction") + 1] == "paint the circle red" and "--mllm" not in args  # given as is
    assert args[args.index("--modules-off") + 1] == "gb,cam" and "--guidance-image" not in args
    auto = shlex.split(DemoSettings("make it red", mask="auto").command("c.ckpt", "e.pt"))
    assert auto[auto.index("--mask") + 1] == "auto" and auto[auto.index("--mllm") + 1] == "e.pt"


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


gradio = pytest.importorskip("gradio", reason="the demo extra (pip install -e '.[demo]'; .ci/run installs it)")


def test_a_painted_edit_keeps_the_photo_outside_and_equals_xmgie_edit(demo_server, tmp_path):
    from gradio_client import Client, handle_file

    from xmgie.cli import main

    url, ckpt = demo_server
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(photo)
    strokes = np.zeros((40, 48, 4), np.uint8)
    strokes[8:28, 10:30] = [255, 255, 255, 255]
    Image.fromarray(strokes).save(tmp_path / "layer.png")
    client = Client(url, verbose=False)
    value = {"background": handle_file(str(photo)), "layers": [handle_file(str(tmp_path / "layer.png"))],
             "composite": handle_file(str(photo)), "id": None}
    edit, shown, compare, files, instruction, seed, status = client.predict(
        value, "make the circle red", "", "painted", 3, False, 2, 2.0, 1.5, [], api_name="/edit")
    src, out = np.asarray(Image.open(photo)), np.asarray(Image.open(edit))
    inside = np.zeros((40, 48), bool)
    inside[8:28, 10:30] = True
    assert out.shape == src.shape and np.array_equal(out[~inside], src[~inside])
    assert not np.array_equal(out[inside], src[inside]) and instruction == "make the circle red" and seed == 3
    # the downloaded settings repeat the edit with `xmgie edit`, pixel for pixel
    by_name = {p.rsplit("/", 1)[-1]: p for p in (f if isinstance(f, str) else f["path"] for f in files)}
    settings = json.loads(open(by_name["settings.json"]).read())
    args = [by_name.get(a, a) for a in shlex.split(settings["command"])[1:]] + ["--out", str(tmp_path / "cli.png")]
    main(args)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli.png")), out)
    assert np.array_equal(np.asarray(Image.open(by_name["mask.png"])) > 127, inside)


def test_bad_input_is_a_message_and_the_next_edit_still_works(demo_server, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = demo_server
    client = Client(url, verbose=False)
    args = ("make it red", "", "anywhere", 0, False, 1, None, None, [])
    with pytest.raises(Exception, match="upload a photo"):
        client.predict(None, *args, api_name="/edit")
    photo = tmp_path / "p.png"
    Image.new("RGB", (16, 16), (200, 10, 10)).save(photo)
    value = {"background": handle_file(str(photo)), "layers": [], "composite": handle_file(str(photo)), "id": None}
    with pytest.raises(Exception, match="paint where the photo may change"):
        client.predict(value, *args[:2], "painted", *args[3:], api_name="/edit")
    edit = client.predict(value, *args, api_name="/edit")[0]
    assert Image.open(edit).size == (16, 16)
