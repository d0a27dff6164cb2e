"""The served demo page, driven by gradio_client (needs the demo extra; `.ci/run` installs it)."""
import json
import shlex

import numpy as np
import pytest
from PIL import Image

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
