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


def test_identity_encoder_is_trained_first_only_when_the_run_uses_ie():
    # DATASET=nosuch: no runs/nosuch/identity/encoder.pt exists, so a run that needs it must train it first
    assert "identity train" not in _dry("train", "DATASET=nosuch")
    full = _dry("train", "DATASET=nosuch", "ARGS=--config experiments/ablation/full.yaml")
    assert full.index("identity train") < full.index("xmgie fit")
    assert "identity train" in _dry("train", "DATASET=nosuch", "ARGS=--model.modules.ie.enabled=true")


def test_evaluate_trains_its_classifier_and_encoder_when_missing():
    out = _dry("evaluate", "DATASET=nosuch")
    assert out.index("attributes train") < out.index("xmgie evaluate")
    assert out.index("identity train") < out.index("xmgie evaluate")
    assert "--attributes runs/nosuch/attributes/classifier.pt" in out


def test_data_root_reaches_training_the_stages_and_evaluation():
    out = _dry("evaluate", "DATASET=cub", "DATA_ROOT=/d/cub", "CKPT=x.ckpt")
    assert "identity train --dataset cub --data-root /d/cub" in out
    assert "attributes train --dataset cub --data-root /d/cub" in out
    assert "evaluate --ckpt x.ckpt --dataset cub --split test --name xmgie --data-root /d/cub" in out
    assert "--data.init_args.root=/d/cub" in _dry("train", "DATASET=cub", "DATA_ROOT=/d/cub")
    assert "--data.init_args.root" not in _dry("train", "DATASET=cub")  # the YAML's root: data/cub


def test_evaluate_skips_ips_and_aa_where_a_dataset_has_no_labels():
    coco = _dry("evaluate", "DATASET=coco")
    assert "identity train" not in coco and "attributes train" not in coco
    assert "--identity" not in coco and "--attributes" not in coco
    flowers = _dry("evaluate", "DATASET=flowers")  # identities (classes) but no attributes
    assert "--identity runs/flowers/identity/encoder.pt" in flowers and "--attributes" not in flowers


def test_make_train_takes_the_full_scale_config():
    out = _dry("train", "DATASET=nosuch", "CONFIG=experiments/ip2p.yaml")
    assert "fit --config experiments/ip2p.yaml" in out and "experiments/train.yaml" not in out
    assert out.index("identity train") < out.index("xmgie fit")  # ip2p.yaml switches IE on


def test_make_train_baseline_names_the_method_and_its_checkpoint():
    dry = _dry("train-baseline", "METHOD=tagan", "DATASET=cub", "DATA_ROOT=/data/cub")
    out = " ".join(dry.replace("\\\n", " ").split())  # one line, single spaces
    assert "baseline train --method tagan --dataset cub --data-root /data/cub --out runs/cub/tagan/baseline.ckpt" in out


def test_make_train_init_fine_tunes_into_its_own_run_with_the_identity_encoder_first():
    out = _dry("train", "DATASET=nosuch", "INIT=runs/x/base.ckpt")
    fit = out[out.index("xmgie fit"):]
    assert "--config experiments/finetune.yaml --model.init_from=runs/x/base.ckpt" in fit
    assert "--trainer.default_root_dir=runs/nosuch/finetune" in fit  # never resumes the base's own run
    assert out.index("identity train") < out.index("xmgie fit")
    assert "init_from" not in _dry("train", "DATASET=nosuch")


def test_make_demo_serves_make_trains_checkpoint_with_the_expander_when_there_is_one(tmp_path):
    out = _dry("demo", f"CKPT={tmp_path}/c.ckpt", f"MLLM={tmp_path}/none.pt")
    assert f"demo --ckpt {tmp_path}/c.ckpt --port 7860" in out and "--mllm" not in out
    (tmp_path / "e.pt").write_bytes(b"")
    assert f"--mllm {tmp_path}/e.pt" in _dry("demo", f"MLLM={tmp_path}/e.pt")
    assert "'.[dev,demo,browser]'" in _dry("-B", "demo-setup")
