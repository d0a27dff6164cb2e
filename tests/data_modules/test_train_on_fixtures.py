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
