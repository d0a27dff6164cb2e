import contextlib
import io
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
    """`xmgie ARGS` in this process (a fresh interpreter per call would cost seconds of imports each): its exit
    status, stdout and stderr. An exception `main` does not turn into a one-line error fails the test."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["xmgie", *args], code, out.getvalue(), err.getvalue())


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


def test_a_given_mask_keeps_every_pixel_outside_it(smoke_run, image, tmp_path):
    mask = np.zeros((40, 56), np.uint8)
    mask[5:30, 10:45] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    main(["edit", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--image", str(image), "--prompt",
          "make the circle red", "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "o.png"),
          "--save-mask", str(tmp_path / "used.png"), "--steps", "2"])
    src, out = np.asarray(Image.open(image)), np.asarray(Image.open(tmp_path / "o.png"))
    assert np.array_equal(out[mask == 0], src[mask == 0]) and not np.array_equal(out[mask > 0], src[mask > 0])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "used.png")), mask)


def edit_in_box(run: Path, photo: Path, shape: tuple[int, int], box: tuple[slice, slice], out: Path,
                prompt: str = "make it red") -> np.ndarray:
    """`xmgie edit` of `photo` (one DDIM step) under a painted rectangle: a (h, w) mask, 255 inside `box`, returned."""
    mask = np.zeros(shape, np.uint8)
    mask[box] = 255
    Image.fromarray(mask).save(out.with_name("mask.png"))
    main(["edit", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--image", str(photo), "--prompt", prompt,
          "--mask", str(out.with_name("mask.png")), "--out", str(out), "--steps", "1"])
    return mask


def test_a_painted_mask_on_a_512_px_photo_keeps_every_other_pixel(smoke_run, tmp_path):
    from skimage.data import astronaut

    photo = astronaut()
    Image.fromarray(photo).save(tmp_path / "astronaut.png")
    mask = edit_in_box(smoke_run, tmp_path / "astronaut.png", photo.shape[:2], np.s_[60:220, 150:330],  # the helmet
                       tmp_path / "o.png", "make the helmet red")
    out = np.asarray(Image.open(tmp_path / "o.png"))
    assert out.shape == photo.shape and np.array_equal(out[mask == 0], photo[mask == 0])


def test_a_sideways_phone_photo_is_edited_upright_and_keeps_its_profile_and_exif(smoke_run, tmp_path):
    """Stored 56 wide and 40 high with EXIF orientation 6 (rotate 90° clockwise to view): the model, the mask (painted
    on the upright photo) and the result are upright; the colour profile and the other EXIF tags are kept."""
    from PIL import ImageCms

    stored = (np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "TestCam"  # orientation, camera make
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif.tobytes(), icc_profile=icc)
    upright = np.rot90(stored, k=-1)                                           # (56, 40, 3): as it is viewed
    mask = edit_in_box(smoke_run, tmp_path / "phone.png", upright.shape[:2], np.s_[10:30, 5:25], tmp_path / "o.png")
    out = Image.open(tmp_path / "o.png")
    pixels = np.asarray(out)
    assert pixels.shape == upright.shape and np.array_equal(pixels[mask == 0], upright[mask == 0])
    assert out.info.get("icc_profile") == icc
    assert out.getexif().get(0x0112, 1) == 1 and out.getexif().get(0x010F) == "TestCam"


def test_a_jpeg_result_is_written_at_high_quality(smoke_run, tmp_path):
    """Outside the mask a JPEG result of a textured photo stays within 2 levels of it on average, less than half of
    what PIL's default quality (75, 4:2:0 chroma) loses there (4.7)."""
    from skimage.data import astronaut

    photo = astronaut()[::2, ::2]                                              # 256 x 256
    Image.fromarray(photo).save(tmp_path / "photo.png")
    mask = edit_in_box(smoke_run, tmp_path / "photo.png", photo.shape[:2], np.s_[30:110, 75:165], tmp_path / "o.jpg",
                       "make the helmet red")
    ours = np.asarray(Image.open(tmp_path / "o.jpg")).astype(float)
    Image.fromarray(photo).save(tmp_path / "default.jpg")  # PIL's defaults: quality 75, 4:2:0
    default = np.asarray(Image.open(tmp_path / "default.jpg")).astype(float)
    outside = mask == 0
    error = np.abs(ours - photo)[outside].mean()
    assert error < 2 and 2 * error < np.abs(default - photo)[outside].mean()


def test_a_given_instruction_is_read_as_is(smoke_run, image, tmp_path, capsys):
    ckpt = str(smoke_run / "checkpoints" / "last.ckpt")
    common = ["edit", "--ckpt", ckpt, "--image", str(image), "--mask", "anywhere", "--steps", "2"]
    main([*common, "--prompt", "make the circle red", "--out", str(tmp_path / "a.png")])
    main([*common, "--prompt", "anything", "--instruction", "make the circle red", "--out", str(tmp_path / "b.png")])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    assert "instruction: 'make the circle red' (given with --instruction)" in capsys.readouterr().err


def test_when_the_automatic_mask_finds_nothing_the_edit_goes_anywhere_and_says_so(smoke_run, image, tmp_path,
                                                                                  capsys):
    main(["edit", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--image", str(image), "--prompt", "",
          "--out", str(tmp_path / "o.png"), "--save-mask", str(tmp_path / "m.png"), "--steps", "1"])
    assert "mask auto found no region, so anywhere, 100.0% of the photo" in capsys.readouterr().err
    assert np.asarray(Image.open(tmp_path / "m.png")).min() == 255


def test_an_automatic_mask_on_a_shapes_image_is_saved_where_the_true_mask_is(smoke_run, tmp_path):
    """Wiring through the command (the smoke model is barely trained: localisation itself is tested with a
    stand-in editor in tests/modules/test_mask_predictor.py and measured in benchmarks/photo_edits.py)."""
    from data_modules.synthetic import ShapesDataModule
    from xmgie.inference import tensor_to_image

    sample = ShapesDataModule(resolution=16).dataset("test")[0]
    tensor_to_image(sample.source).save(tmp_path / "s.png")
    main(["edit", "--ckpt", str(smoke_run / "checkpoints" / "last.ckpt"), "--image", str(tmp_path / "s.png"),
          "--prompt", sample.instruction, "--out", str(tmp_path / "o.png"), "--save-mask", str(tmp_path / "m.png"),
          "--steps", "1"])
    saved = np.asarray(Image.open(tmp_path / "m.png")) > 127
    assert saved.shape == (16, 16) and (saved & (sample.mask[0].numpy() > 0)).any()


def test_many_photos_one_call_each_edit_as_if_alone(smoke_run, tmp_path, capsys):
    rng = np.random.default_rng(1)
    sizes = [(40, 56), (24, 24), (33, 20)]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(tmp_path / f"p{i}.png")
    ckpt = str(smoke_run / "checkpoints" / "last.ckpt")
    main(["edit", "--ckpt", ckpt, "--image", str(tmp_path / "p*.png"), "--prompt", "make the circle red",
          "--out", str(tmp_path / "out"), "--save-mask", str(tmp_path / "masks"), "--steps", "2", "--batch-size", "2"])
    printed = capsys.readouterr()
    assert printed.out.split() == [str(tmp_path / "out" / f"p{i}.png") for i in range(3)]
    assert printed.err.count("mask auto") == 3
    for i, (h, w) in enumerate(sizes):
        assert Image.open(tmp_path / "out" / f"p{i}.png").size == (w, h)
        assert Image.open(tmp_path / "masks" / f"p{i}.png").mode == "L"
    main(["edit", "--ckpt", ckpt, "--image", str(tmp_path / "p1.png"), "--prompt", "make the circle red",
          "--out", str(tmp_path / "alone.png"), "--steps", "2"])
    alone = np.asarray(Image.open(tmp_path / "alone.png")).astype(int)
    batched = np.asarray(Image.open(tmp_path / "out" / "p1.png")).astype(int)
    assert np.abs(alone - batched).max() <= 1  # its noise and its mask come from the seed, not the batch


def test_the_editing_path_imports_neither_lightning_nor_the_datasets(smoke_run, image, tmp_path):
    """Nor open_clip, whose package import loads every model family (the text tower and tokenizer are the package's
    own), nor diffusers, transformers or torch's compiler (the U-Net and the DDIM sampler are the package's own)."""
    code = ("import sys; from xmgie.cli import main; "
            f"main(['edit', '--ckpt', {str(smoke_run / 'checkpoints' / 'last.ckpt')!r}, '--image', {str(image)!r}, "
            f"'--prompt', 'x', '--out', {str(tmp_path / 'o.png')!r}, '--steps', '1']); "
            "print(sorted(m for m in ('lightning', 'lightning.pytorch', 'data_modules', 'torchmetrics', 'open_clip', "
            "'timm', 'diffusers', 'transformers', 'torch._dynamo') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("case", ["missing_image", "unreadable_image", "rgb_mask", "missing_ckpt", "foreign_ckpt",
                                  "garbage_ckpt", "absent_module"])
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
    elif case == "absent_module":
        args["--modules-off"] = "gb"  # the smoke model has none
    proc = run_cli("edit", *[x for kv in args.items() for x in kv], "--out", str(tmp_path / "o.png"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmgie: error:") and "Traceback" not in proc.stderr
    expected = {"missing_image": "image not found", "unreadable_image": "cannot read image",
                "rgb_mask": "single-channel", "missing_ckpt": "checkpoint not found",
                "foreign_ckpt": "not an xMGIE generator checkpoint", "garbage_ckpt": "cannot read checkpoint",
                "absent_module": "no module gb (it has: none)"}[case]
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


@pytest.mark.parametrize("masks", ["auto", "anywhere"])
def test_evaluate_with_predicted_or_no_masks_records_it_and_scores_against_the_dataset(masks, smoke_run, tmp_path):
    ckpt = str(smoke_run / "checkpoints" / "last.ckpt")
    common = ["--dataset", "shapes", "--limit", "4", "--steps", "1", "--batch-size", "4", "--no-inception",
              "--no-lpips"]
    main(["evaluate", "--ckpt", ckpt, *common, "--out", str(tmp_path / "given.json")])
    main(["evaluate", "--ckpt", ckpt, *common, "--mask", masks, "--mask-draws", "2", "--out", str(tmp_path / "r.json")])
    given, result = (json.loads((tmp_path / f).read_text()) for f in ("given.json", "r.json"))
    assert given["masks"] == {"source": "dataset"} and result["masks"]["source"] == masks
    assert result["metrics"]["psnr_source"] == given["metrics"]["psnr_source"]  # same targets and masks scored
    assert result["metrics"]["psnr"] != given["metrics"]["psnr"]
    if masks == "auto":
        assert result["masks"]["draws"] == 2 and 0 <= result["masks"]["iou"] <= 1


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
