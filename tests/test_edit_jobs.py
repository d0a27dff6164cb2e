from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmgie.edit_jobs import expand_images, plan, read_prompts
from xmgie.errors import UserError


def write(path: Path, shape=(12, 16, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    for name in ("b.png", "a.jpg", "c.PNG"):
        write(tmp_path / "photos" / name)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    write(tmp_path / "other" / "a.png")
    return tmp_path


def test_files_folders_and_globs_expand_in_order(photos):
    folder = expand_images([str(photos / "photos")])
    assert [p.name for p in folder] == ["a.jpg", "b.png", "c.PNG"]
    assert [p.name for p in expand_images([str(photos / "photos" / "*.png")])] == ["b.png"]
    assert expand_images([str(photos / "other" / "a.png")]) == [photos / "other" / "a.png"]
    with pytest.raises(UserError, match="no image found at"):
        expand_images([str(photos / "nothing*.png")])


def test_several_photos_write_into_a_folder_and_shared_names_get_an_index(photos):
    jobs = plan([str(photos / "photos"), str(photos / "other" / "a.png")], "make it red", None, None,
                str(photos / "out"), str(photos / "masks"))
    assert [j.out.name for j in jobs] == ["a-0.png", "b.png", "c.png", "a-3.png"]
    assert all(j.out.parent == photos / "out" and j.mask == "auto" and j.prompt == "make it red" for j in jobs)
    assert jobs[1].mask_out == photos / "masks" / "b.png"
    beside = plan([str(photos / "photos" / "b.png")], "x", None, "anywhere", None, None)
    assert beside[0].out == photos / "photos" / "b_edited.png" and beside[0].mask == "anywhere"
    with pytest.raises(UserError, match="--out is a folder"):
        plan([str(photos / "photos")], "x", None, None, str(photos / "o.png"), None)


def test_a_prompts_file_lists_images_relative_to_itself(photos):
    prompts = photos / "photos" / "edits.tsv"
    prompts.write_text("# image\tprompt\n\nb.png\tmake it red\n" + f"{photos / 'other' / 'a.png'}\tadd a hat\n")
    assert read_prompts(prompts) == [(photos / "photos" / "b.png", "make it red"),
                                     (photos / "other" / "a.png", "add a hat")]
    jobs = plan(None, None, str(prompts), None, None, None)
    assert [(j.image.name, j.prompt) for j in jobs] == [("b.png", "make it red"), ("a.png", "add a hat")]
    prompts.write_text("b.png make it red\n")
    with pytest.raises(UserError, match=r"edits.tsv:1: expected IMAGE<TAB>PROMPT"):
        read_prompts(prompts)


def test_mask_folders_are_matched_by_name(photos):
    write(photos / "masks" / "b.png", (12, 16))
    jobs = plan([str(photos / "photos" / "b.png")], "x", None, str(photos / "masks"), None, None)
    assert jobs[0].mask == photos / "masks" / "b.png"
    with pytest.raises(UserError, match="no mask for .*c.PNG"):
        plan([str(photos / "photos" / "c.PNG")], "x", None, str(photos / "masks"), None, None)


@pytest.mark.parametrize("case,message", [
    ("both_prompts", "either --prompt"), ("no_prompt", "either --prompt"), ("prompts_and_images", "leave out --image"),
    ("bad_image", "cannot read image"), ("missing_mask", "mask not found")])
def test_every_input_is_checked_before_the_model_loads(case, message, photos):
    images, prompt, prompts, mask = [str(photos / "photos")], "x", None, None
    if case == "both_prompts":
        prompts = str(photos / "p.tsv")
    elif case == "no_prompt":
        prompt = None
    elif case == "prompts_and_images":
        (photos / "p.tsv").write_text("a.png\tx\n")
        prompt, prompts = None, str(photos / "p.tsv")
    elif case == "bad_image":
        (photos / "photos" / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    elif case == "missing_mask":
        mask = str(photos / "nope.png")
    with pytest.raises(UserError, match=message):
        plan(images, prompt, prompts, mask, str(photos / "out"), None)
