import subprocess

from tests.conftest import REPO


def _dry_run(run_dir) -> str:
    proc = subprocess.run(["make", "-n", "train", f"RUN={run_dir}"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_train_resumes_from_last_checkpoint_when_present(tmp_path):
    assert "--ckpt_path" not in _dry_run(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    out = _dry_run(tmp_path)
    assert f"--ckpt_path={tmp_path}/checkpoints/last.ckpt" in out
    assert f"--trainer.default_root_dir={tmp_path}" in out and "experiments/data/shapes.yaml" in out


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / "README.md").read_text()
    assert "make test" in (REPO / ".ci" / "run").read_text()


def _dry(*args: str) -> str:
    proc = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_train_and_evaluate_leave_the_label_networks_to_the_commands():
    # which runs need E_id and which datasets have labels is decided by `xmgie fit --train_missing` from the
    # resolved config and by `xmgie evaluate --train-missing` from the data module, not by lists here
    for args in ((), ("ARGS=--config experiments/ablation/full.yaml",), ("INIT=b.ckpt",)):
        out = _dry("train", "DATASET=nosuch", *args)
        assert "identity train" not in out and "--model.modules.ie.weights=runs/nosuch/identity/encoder.pt" in out
        assert "--train_missing=true" in out
    for dataset in ("coco", "cub", "flowers"):
        out = _dry("evaluate", f"DATASET={dataset}")
        assert "identity train" not in out and "attributes train" not in out
        assert f"--identity runs/{dataset}/identity/encoder.pt --attributes runs/{dataset}/attributes/" \
               f"classifier.pt --train-missing" in out


def test_data_root_reaches_training_the_stages_and_evaluation():
    out = _dry("evaluate", "DATASET=cub", "DATA_ROOT=/d/cub", "CKPT=x.ckpt")
    assert "evaluate --ckpt x.ckpt --dataset cub --split test --name xmgie --data-root /d/cub" in out
    assert "identity train --dataset cub --data-root /d/cub" in _dry("train-identity", "DATASET=cub",
                                                                      "DATA_ROOT=/d/cub")
    assert "--data.init_args.root=/d/cub" in _dry("train", "DATASET=cub", "DATA_ROOT=/d/cub")
    assert "--data.init_args.root" not in _dry("train", "DATASET=cub")  # the YAML's root: data/cub


def test_make_train_takes_the_full_scale_config():
    out = _dry("train", "DATASET=nosuch", "CONFIG=experiments/ip2p.yaml")
    assert "fit --config experiments/ip2p.yaml" in out and "experiments/train.yaml" not in out


def test_make_train_baseline_names_the_method_and_its_checkpoint():
    dry = _dry("train-baseline", "METHOD=tagan", "DATASET=cub", "DATA_ROOT=/data/cub")
    out = " ".join(dry.replace("\\\n", " ").split())  # one line, single spaces
    assert "baseline train --method tagan --dataset cub --data-root /data/cub --out runs/cub/tagan/baseline.ckpt" in out


def test_make_train_init_fine_tunes_into_its_own_run():
    out = _dry("train", "DATASET=nosuch", "INIT=runs/x/base.ckpt")
    fit = out[out.index("xmgie fit"):]
    assert "--config experiments/finetune.yaml --model.init_from=runs/x/base.ckpt" in fit
    assert "--trainer.default_root_dir=runs/nosuch/finetune" in fit  # never resumes the base's own run
    assert "init_from" not in _dry("train", "DATASET=nosuch")


def test_make_demo_serves_make_trains_checkpoint_with_the_expander_and_mask_net_when_there_are_some(tmp_path):
    out = _dry("demo", f"CKPT={tmp_path}/c.ckpt", f"EXPANDER={tmp_path}/none.pt", f"MASK_NET={tmp_path}/none.pt")
    assert f"demo --ckpt {tmp_path}/c.ckpt --port 7860" in out and "--expander" not in out and "--mask-net" not in out
    (tmp_path / "e.pt").write_bytes(b"")
    assert f"--expander {tmp_path}/e.pt" in _dry("demo", f"EXPANDER={tmp_path}/e.pt")
    assert f"--mask-net {tmp_path}/e.pt" in _dry("demo", f"MASK_NET={tmp_path}/e.pt")
    assert "'.[dev,demo,browser]'" in _dry("-B", "demo-setup")
