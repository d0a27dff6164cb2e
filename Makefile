# A fresh clone needs only `make train` and `make test`: every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
XMGIE := $(VENV)/bin/xmgie
STAMP := $(VENV)/.installed-stamp

DATASET ?= shapes
NAME ?= default
RUN := runs/$(DATASET)/$(NAME)
CKPT ?= $(RUN)/checkpoints/last.ckpt
IDENTITY := runs/$(DATASET)/identity/encoder.pt
ARGS ?=

.PHONY: setup train train-identity evaluate test bench preview clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Trains into runs/$(DATASET)/$(NAME); run again after an interruption and it resumes from last.ckpt.
# The IE module's frozen identity encoder is trained first when it does not exist yet.
train: $(STAMP) $(IDENTITY)
	$(XMGIE) fit --config experiments/train.yaml --data experiments/data/$(DATASET).yaml \
		--trainer.default_root_dir=$(RUN) --model.modules.ie.weights=$(IDENTITY) \
		$(if $(wildcard $(RUN)/checkpoints/last.ckpt),--ckpt_path=$(RUN)/checkpoints/last.ckpt) $(ARGS)

$(IDENTITY): | $(STAMP)
	$(XMGIE) identity train --dataset $(DATASET) --out $@

# Retrains the identity encoder E_id (writes $(IDENTITY) and a .json with its held-out accuracy).
train-identity: $(STAMP)
	$(XMGIE) identity train --dataset $(DATASET) --out $(IDENTITY) $(ARGS)

evaluate: $(STAMP)
	$(XMGIE) evaluate --ckpt $(CKPT) --dataset $(DATASET) --split test \
		$(if $(wildcard $(IDENTITY)),--identity $(IDENTITY)) $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q tests $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench.py $(ARGS)

preview: $(STAMP)
	$(XMGIE) data preview --dataset $(DATASET) --out $(RUN)/data_preview.png

clean:
	rm -rf $(VENV) .pytest_cache
