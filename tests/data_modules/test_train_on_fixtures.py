"""`make train DATASET=<d> DATA_ROOT=<fixture>` runs end to end on every loader's miniature tree (the smoke
model, 5 steps), and the checkpoint remembers the data root and the caption datasets' hidden mask."""
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from tests.data_modules.conftest import LOADERS


@pytest.mark.parametrize("name", LOADERS)
def test_make_train_on_fixture(name, fixture_trees, tmp_path):
    root, run = fixture_trees[name], tmp_path / "run"
    args = (f"--config experiments/smoke.yaml --data experiments/data/{name}.yaml --data.init_args.root={root} "
            "--data.init_args.resolution=16 --data.init_args.batch_size=4 --data.init_args.num_workers=0 "
            "--trainer.max_steps=5 --trainer.enable_progress_bar=false")
    # STAMP= and XMGIE=: run with this interpreter instead of (re)creating .venv
    proc = subprocess.run(["make", "-s", "-C", str(REPO), "train", f"DATASET={name}", f"DATA_ROOT={root}",
                           f"RUN={run}", "STAMP=", f"XMGIE={sys.executable} -m xmgie.cli", f"ARGS={args}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 5
    assert ckpt["xmgie"]["dataset"] == name and ckpt["xmgie"]["root"] == str(root)
    assert ckpt["xmgie"]["hide_masked_source"] == (name != "triplets")
    assert ckpt["hyper_parameters"]["generator"]["hide_masked_source"] == (name != "triplets")
    assert (run / "samples").is_dir() and any((run / "samples").iterdir())


def test_evaluate_follows_the_checkpoints_data_root_and_the_caption_protocol(fixture_trees, tmp_path):
    from tests.conftest import fit
    from xmgie.evaluation.evaluate import evaluate_checkpoint

    root = fixture_trees["flowers"]
    run = fit(tmp_path / "run", "--data", "experiments/data/flowers.yaml", f"--data.init_args.root={root}",
              "--data.init_args.resolution=16", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0")
    result = evaluate_checkpoint(run / "checkpoints" / "last.ckpt", inception=False, lpips=False, batch_size=3)
    assert result["dataset"] == "flowers" and result["protocol"] == "captions"
    assert result["n_images"] == 4 and result["n_skipped"] == 0
    assert 0 < result["metrics"]["psnr"] < 100 and "psnr_source" not in result["metrics"]


def test_cli_writes_a_fixture_and_previews_it(tmp_path, capsys):
    from xmgie.cli import main

    main(["data", "fixture", "--dataset", "coco", "--root", str(tmp_path / "coco"), "--n", "6"])
    assert (tmp_path / "coco" / "annotations" / "instances_train2017.json").is_file()
    main(["data", "preview", "--dataset", "coco", "--root", str(tmp_path / "coco"), "--split", "test", "--paired",
          "--n", "2", "--out", str(tmp_path / "grid.png")])
    out = capsys.readouterr().out
    assert out.count("P: ") == 2 and (tmp_path / "grid.png").is_file()
    with pytest.raises(SystemExit):  # an existing, non-empty folder is not overwritten
        main(["data", "fixture", "--dataset", "coco", "--root", str(tmp_path / "coco")])


def test_cub_from_its_image_archive_alone_trains_and_every_record_names_the_fallback_split(tmp_path):
    """Only CUB_200_2011.tgz's contents (no caption archive: no class lists, no captions): the loader uses the
    documented class split (ids divisible by 4 for test), warns once per fallback, and the checkpoint, the
    evaluation's result and the table's footnote all say so."""
    import shutil
    import warnings

    from data_modules.cub import CUBDataModule
    from data_modules.fixtures import write_fixture
    from tests.conftest import fit
    from xmgie.evaluation.evaluate import evaluate_checkpoint
    from xmgie.evaluation.tables import DatasetSpec, TableSpec, footnote

    root = write_fixture("cub", tmp_path / "cub", n_images=16)
    for extra in ("text_c10", "trainvalclasses.txt", "testclasses.txt", "segmentations"):
        path = root / extra
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm = CUBDataModule(root=str(root), resolution=16, cache=False)
        records = dm.records()
    assert sorted({r.identity for r in records["test"]}) == [3]  # class 004: its id is a multiple of 4
    assert {r.identity for s in ("train", "val") for r in records[s]} == {0, 1, 2}
    assert set(dm.notes) == {"split", "captions"} and "multiple of 4" in dm.notes["split"]
    assert sum("multiple of 4" in str(w.message) for w in caught) == 1
    run = fit(tmp_path / "run", "--data", "experiments/data/cub.yaml", f"--data.init_args.root={root}",
              "--data.init_args.resolution=16", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["xmgie"]["notes"] == dm.notes
    result = evaluate_checkpoint(run / "checkpoints" / "last.ckpt", inception=False, lpips=False, batch_size=4)
    assert result["data_notes"] == dm.notes
    spec = TableSpec("t", "", "rows", ["psnr"], [DatasetSpec("cub", "CUB", ["psnr"])], [("mgie", "MGIE")])
    assert any(line.startswith("CUB: split: no testclasses.txt") for line in footnote(spec, {("cub", "mgie"): result}))


def test_the_fallback_class_splits_have_the_published_sizes_and_partition_the_classes():
    from data_modules.records import fallback_test_classes

    for n, every, test_size in ((200, 4, 50), (102, 5, 20)):
        ids = set(range(1, n + 1))
        test = fallback_test_classes(ids, every)
        assert len(test) == test_size and test <= ids and len(ids - test) == n - test_size
