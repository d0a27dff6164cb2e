# A fresh clone needs only `make train` and `make test`: every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
XMGIE := $(VENV)/bin/xmgie
STAMP := $(VENV)/.installed-stamp

DATASET ?= shapes
# INIT=<checkpoint>: fine-tune that trained editor with the four modules (experiments/finetune.yaml) into
# runs/$(DATASET)/finetune instead of training from scratch
INIT ?=
NAME ?= $(if $(INIT),finetune,default)
RUN := runs/$(DATASET)/$(NAME)
CKPT ?= $(RUN)/checkpoints/last.ckpt
IDENTITY := runs/$(DATASET)/identity/encoder.pt
ATTRIBUTES := runs/$(DATASET)/attributes/classifier.pt
EXPANDER := runs/$(DATASET)/expander/expander.pt
MASK_NET := runs/$(DATASET)/mask/mask_net.pt
METHOD ?= xmgie
ARGS ?=
# the training config: experiments/train.yaml (tiny, CPU) or experiments/ip2p.yaml (InstructPix2Pix, GPU)
CONFIG ?= experiments/train.yaml
# where a dataset on disk lives (default: experiments/data/$(DATASET).yaml's root, data/$(DATASET))
DATA_ROOT ?=
DATA_ARG := $(if $(DATA_ROOT),--data.init_args.root=$(DATA_ROOT))
STAGE_ROOT := $(if $(DATA_ROOT),--data-root $(DATA_ROOT))

.PHONY: data setup train train-identity train-attr train-expander train-mllm train-mask train-baseline evaluate table \
	ablation literal table1 status test test-browser demo demo-setup bench bench-metrics preview clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Trains into runs/$(DATASET)/$(NAME); run again after an interruption and it resumes from last.ckpt.
# With INIT=<ckpt> it fine-tunes that editor (its weights load, the modules start fresh, the base's sha256 is kept).
# When the resolved config turns IE on (INIT's finetune.yaml, an ablation config, ip2p.yaml …), its frozen identity
# encoder is trained first if it does not exist yet (--train_missing); the default run (modules off) does not.
FINETUNE_ARGS := $(if $(INIT),--config experiments/finetune.yaml --model.init_from=$(INIT))
train: $(STAMP)
	$(XMGIE) fit --config $(CONFIG) $(FINETUNE_ARGS) --data experiments/data/$(DATASET).yaml $(DATA_ARG) \
		--trainer.default_root_dir=$(RUN) --model.modules.ie.weights=$(IDENTITY) --train_missing=true \
		$(if $(wildcard $(RUN)/checkpoints/last.ckpt),--ckpt_path=$(RUN)/checkpoints/last.ckpt) $(ARGS)

# Retrains the identity encoder E_id (writes $(IDENTITY) and a .json with its held-out accuracy).
train-identity: $(STAMP)
	$(XMGIE) identity train --dataset $(DATASET) $(STAGE_ROOT) --out $(IDENTITY) $(ARGS)

# The attribute classifier behind AA (writes $(ATTRIBUTES) and a .json with its held-out accuracy).
train-attr: $(STAMP)
	$(XMGIE) attributes train --dataset $(DATASET) $(STAGE_ROOT) --out $(ATTRIBUTES) $(ARGS)

# The instruction expander, MGIE's MLLM (writes $(EXPANDER) and a .json with held-out token accuracy and BLEU,
# with the image and with the visual prefix zeroed). Then: xmgie edit --expander $(EXPANDER) …, or train the
# generator on its instructions with ARGS="--model.text_source=expander --model.expander=$(EXPANDER)".
train-expander: $(STAMP)
	$(XMGIE) expander train --dataset $(DATASET) $(STAGE_ROOT) --out $(EXPANDER) $(ARGS)
train-mllm: train-expander

# A learned edit-mask predictor on the dataset's masks (writes $(MASK_NET) and a .json of held-out IoU, precision
# and recall). Then: xmgie edit --mask-net $(MASK_NET) … (or evaluate) predicts masks with it instead of the U-Net.
train-mask: $(STAMP)
	$(XMGIE) mask train --dataset $(DATASET) $(STAGE_ROOT) --out $(MASK_NET) $(ARGS)

# A GAN baseline of Table 1 (METHOD=sisgan|tagan|manigan|hifill) with the data settings of `make train`; then
# `make evaluate METHOD=sisgan CKPT=runs/$(DATASET)/sisgan/baseline.ckpt`. xmgie/methods/ has every method.
train-baseline: $(STAMP)
	$(XMGIE) baseline train --method $(METHOD) --dataset $(DATASET) $(STAGE_ROOT) \
		--out runs/$(DATASET)/$(METHOD)/baseline.ckpt $(ARGS)

# Edits the test split and writes results/$(DATASET)/$(METHOD).json: IS/FID/LPIPS/SSIM/PSNR, and AA and IPS with
# the attribute classifier and E_id (each trained first if missing, where the dataset has those labels; else the
# metric is left out). Missing pretrained backbones are reported as uncalibrated: `xmgie weights status`.
evaluate: $(STAMP)
	$(XMGIE) evaluate --ckpt $(CKPT) --dataset $(DATASET) --split test --name $(METHOD) $(STAGE_ROOT) \
		--identity $(IDENTITY) --attributes $(ATTRIBUTES) --train-missing $(ARGS)

# Renders results/table1.{md,csv,tex} from results/<dataset>/*.json (TABLE=table2 for the ablation).
TABLE ?= table1
table: $(STAMP)
	$(XMGIE) table --spec experiments/tables/$(TABLE).yaml

# The paper's tables as resumable pipelines (xmgie run): what is done is kept, an interrupted run resumes, a
# failed stage is reported with its log. BUDGET=smoke|cpu|paper (default: paper with a GPU, else cpu).
# EXECUTOR=local (processes here) | slurm (each stage a submitit job) | submitit-local (those jobs, run here).
BUDGET ?= auto
EXECUTOR ?= local
DATASETS ?= $(DATASET)
RUN_ROOTS := $(if $(DATA_ROOT),--data-root $(DATASET)=$(DATA_ROOT))
PIPELINE := $(XMGIE) run --budget $(BUDGET) --executor $(EXECUTOR) $(RUN_ROOTS)
# REGIME=dilated|eroded|predicted|identity: Table 2's checkpoints given the masks users give, or read for identity (experiments/tables/table2_*.yaml)
REGIME ?=
ablation: $(STAMP)
	$(PIPELINE) --spec experiments/tables/table2$(if $(REGIME),_$(REGIME)).yaml --datasets $(DATASETS) $(ARGS)

# Full xMGIE with the fine-tuning forms of its modules vs the paper's literal ones (reuses Table 2's stages).
literal: $(STAMP)
	$(PIPELINE) --spec experiments/tables/literal.yaml --datasets $(DATASETS) $(ARGS)

table1: $(STAMP)
	$(PIPELINE) --spec experiments/tables/table1.yaml $(ARGS)

# Every stage of TABLE's pipeline: done / running / failed (with its log) / interrupted / pending.
status: $(STAMP)
	$(XMGIE) run --spec experiments/tables/$(TABLE).yaml --budget $(BUDGET) --status \
		$(if $(filter table2,$(TABLE)),--datasets $(DATASETS)) $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests $(ARGS)

# The web demo's extras (Gradio; Selenium for the browser test), installed on first use: `make setup` stays light.
DEMO_STAMP := $(VENV)/.demo-stamp
$(DEMO_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,demo,browser]'
	touch $(DEMO_STAMP)
demo-setup: $(DEMO_STAMP)

# A local web page over CKPT (default: make train's checkpoint) at http://127.0.0.1:$(PORT), with the instruction
# expander when make train-expander has written one (or EXPANDER=<file>), and the learned mask predictor for its
# automatic masks when make train-mask has written one (or MASK_NET=<file>).
PORT ?= 7860
demo: $(DEMO_STAMP)
	$(XMGIE) demo --ckpt $(CKPT) --port $(PORT) $(if $(wildcard $(EXPANDER)),--expander $(EXPANDER)) \
		$(if $(wildcard $(MASK_NET)),--mask-net $(MASK_NET)) $(ARGS)

# The demo page in headless chromium (apt-get install chromium chromium-driver; skipped without them) and through
# gradio_client. XMGIE_SCREENSHOT=<path> keeps the page's screenshot.
test-browser: $(DEMO_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests/browser tests/test_demo.py tests/test_demo_served.py $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench.py $(ARGS)

bench-metrics: $(STAMP)
	$(PY) benchmarks/bench_metrics.py $(ARGS)

# Downloads DATASET's official files into DATA_ROOT (default data/$(DATASET)), checked and unpacked; resumable.
data: $(STAMP)
	$(XMGIE) data fetch --dataset $(DATASET) $(if $(DATA_ROOT),--root $(DATA_ROOT)) $(ARGS)

preview: $(STAMP)
	$(XMGIE) data preview --dataset $(DATASET) $(if $(DATA_ROOT),--root $(DATA_ROOT)) --out $(RUN)/data_preview.png

clean:
	rm -rf $(VENV) .pytest_cache
