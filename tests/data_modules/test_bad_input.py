"""Bad input: missing data is one clear error; unreadable files are skipped and counted, malformed annotation
lines skipped and counted; the index cache lives outside the dataset folder and follows its files."""
import os
import shutil
import warnings

import pytest

from data_modules import build_datamodule
from data_modules.base import EditSample, Skipped, collate
from data_modules.fixtures import write_fixture
from data_modules.records import DatasetMissing, FileDataModule
from tests.data_modules.conftest import LOADERS
from xmgie.errors import UserError


def _dm(name, root, **kwargs) -> FileDataModule:
    return build_datamodule(name, root=str(root), resolution=16, batch_size=4, **kwargs)


@pytest.mark.parametrize("name", LOADERS)
def test_missing_root_names_dataset_path_layout_and_source(name, tmp_path):
    with pytest.raises(DatasetMissing) as err:
        _dm(name, tmp_path / "nowhere").records()
    text = str(err.value)
    assert isinstance(err.value, UserError) and "\n" not in text
    assert text.startswith(f"{name}: expected {tmp_path / 'nowhere'}") and "layout under" in text
    assert "get it from" in text


@pytest.mark.parametrize("name, annotation", [
    ("cub", "CUB_200_2011/bounding_boxes.txt"), ("flowers", "imagelabels.mat"),
    ("coco", "annotations/captions_val2017.json"), ("celebahq", "Eval/list_eval_partition.txt"),
    ("cars", "devkit/cars_meta.mat"), ("deepfashion", "labels/texture/pattern_ann.txt"),
    ("triplets", "edit_sessions.json")])
def test_missing_annotation_file_is_named(name, annotation, fixture_trees, tmp_path):
    root = shutil.copytree(fixture_trees[name], tmp_path / name)
    (root / annotation).unlink()
    with pytest.raises(DatasetMissing, match="expected .*" + annotation.split("/")[-1].split(".")[0]):
        _dm(name, root, cache=False).records()


def test_a_corrupt_jpeg_is_skipped_counted_and_reported_once_per_epoch(tmp_path):
    root = write_fixture("cub", tmp_path / "cub")
    dm = _dm("cub", root, cache=False)
    bad = root / dm.records()["train"][0].image
    bad.write_bytes(bad.read_bytes()[:300])  # truncated mid-stream
    items = [dm.dataset("train")[i] for i in range(len(dm.dataset("train")))]
    assert sum(isinstance(s, Skipped) for s in items) == 1
    assert sum(isinstance(s, EditSample) for s in items) == len(items) - 1
    batch = collate(items)
    assert batch["n_skipped"] == 1 and str(bad) in batch["skipped"][0]
    # training goes on and says so once per epoch (8 train images, batch 4: 2 batches per epoch)
    from tests.conftest import fit

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(tmp_path / "run", "--data", "experiments/data/cub.yaml", f"--data.init_args.root={root}",
            "--data.init_args.resolution=16", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0",
            "--data.init_args.cache=false", "--trainer.max_steps=4")
    reports = [str(w.message) for w in caught if "unreadable samples were skipped" in str(w.message)]
    assert len(reports) == 2 and all(r.startswith("1 unreadable") and str(bad) in r for r in reports)


def test_malformed_annotation_lines_are_skipped_and_counted(tmp_path):
    root = write_fixture("cub", tmp_path / "cub")
    boxes = root / "CUB_200_2011/bounding_boxes.txt"
    boxes.write_text(boxes.read_text() + "13 1.0\n")  # too few fields
    labels = root / "CUB_200_2011/attributes/image_attribute_labels.txt"
    labels.write_text(labels.read_text() + "1 2 x 3 4.0\n")  # not a number
    dm = _dm("cub", root, cache=False)
    with pytest.warns(UserWarning, match="skipped 1 malformed line"):
        records = dm.records()
    assert dm.malformed == {str(boxes): 1, str(labels): 1}
    assert sum(len(v) for v in records.values()) == 12  # nothing lost, nothing guessed


def test_index_cache_is_outside_the_dataset_and_follows_its_files(tmp_path, monkeypatch):
    monkeypatch.setenv("XMGIE_CACHE", str(tmp_path / "cache"))
    root = write_fixture("deepfashion", tmp_path / "df")
    before = sorted(p for p in root.rglob("*"))
    first = _dm("deepfashion", root).records()
    assert sorted(p for p in root.rglob("*")) == before  # nothing written in the dataset folder
    assert len(list((tmp_path / "cache" / "index").glob("deepfashion-*.pkl"))) == 1

    def no_index(self):
        raise AssertionError("the index should come from the cache")

    monkeypatch.setattr(type(_dm("deepfashion", root)), "index", no_index)
    cached = _dm("deepfashion", root).records()
    assert [r.key for r in cached["train"]] == [r.key for r in first["train"]]
    captions = root / "captions.json"
    captions.write_text(captions.read_text().replace("The lady", "A lady"))
    os.utime(captions, ns=(1, 1))  # a changed file invalidates the cache even with an old time stamp
    with pytest.raises(AssertionError, match="from the cache"):
        _dm("deepfashion", root).records()


def test_options_that_shape_the_index_are_part_of_the_cache_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XMGIE_CACHE", str(tmp_path / "cache"))
    root = write_fixture("cub", tmp_path / "cub", n_images=24)
    assert len(_dm("cub", root).records()["val"]) == 1
    assert len(_dm("cub", root, val_size=0).records()["val"]) == 0
    official = _dm("cub", root, split="official").records()
    assert len(official["test"]) == 12 and len(_dm("cub", root).records()["test"]) == 6
    assert len(list((tmp_path / "cache" / "index").glob("cub-*.pkl"))) == 3


def test_mask_problems_resize_with_a_warning_or_skip(tmp_path):
    from PIL import Image

    root = write_fixture("cub", tmp_path / "cub")
    dm = _dm("cub", root, cache=False)
    rec, other = dm.records()["train"][0], dm.records()["train"][1]
    seg = root / rec.mask
    Image.open(seg).resize((20, 20)).save(seg)
    with pytest.warns(UserWarning, match="resized"):
        assert isinstance(dm.dataset("train")[0], EditSample)
    (root / other.mask).write_bytes(b"not a png")
    assert isinstance(dm.dataset("train")[1], Skipped)  # an unreadable mask: skipped like an unreadable image
    (root / rec.mask).unlink()  # no segmentation: the bounding box
    s = dm.dataset("train")[0]
    assert isinstance(s, EditSample) and s.mask.sum() > 0


def test_generated_datasets_take_no_root():
    with pytest.raises(KeyError, match="takes no root"):
        build_datamodule("shapes", root="x")
    with pytest.raises(ValueError, match="split"):
        build_datamodule("cub", root="x", split="random")
