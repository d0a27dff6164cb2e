"""The modules at step 0 of fine-tuning: what each does to a trained editor before it has learned anything.

    python benchmarks/finetune_start.py --base runs/shapes/default/checkpoints/last.ckpt \
        --identity runs/shapes/identity/encoder.pt [--limit 256]

For every variant (the base alone, each module alone and all four, in the paper's literal form and in the
fine-tuning form of experiments/finetune.yaml), the base checkpoint's weights are loaded exactly as
`--model.init_from` does, the new module parameters are left at their initial values, and the test split is
edited and scored (PSNR gain over copying, inside/outside the mask, leakage, seam, IPS). A module that does no
harm at the start leaves every figure at the base's. Writes benchmarks/results/finetune_start.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xmgie.checkpoints import read_checkpoint  # noqa: E402
from xmgie.evaluation.evaluate import evaluate_editor  # noqa: E402
from xmgie.training.lit_generator import XMGIEModule  # noqa: E402
from xmgie.training.init_from import load_base  # noqa: E402

FINETUNE = yaml.safe_load((REPO / "experiments/finetune.yaml").read_text())["model"]["modules"]
LITERAL = {"pfb": {"alpha_init": 0.5}, "ie": {"attention": "appended"}, "cam": {}, "gb": {}}
REPORTED = ("psnr_gain", "psnr_outside_mask", "psnr_inside_mask", "leakage", "seam", "ips")


def variant(base_modules: dict, enabled: tuple[str, ...], form: dict) -> dict:
    modules = copy.deepcopy(base_modules)
    for name in ("pfb", "cam", "ie", "gb"):
        modules[name]["enabled"] = name in enabled
        if name in enabled:
            modules[name].update(form.get(name, {}))
    return modules


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--identity", required=True)
    ap.add_argument("--limit", type=int, default=256)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/finetune_start.json"))
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    ckpt = read_checkpoint(args.base)
    hp = ckpt["hyper_parameters"]
    finetune_form = {name: {k: v for k, v in cfg.items() if k != "enabled"} for name, cfg in FINETUNE.items()}
    runs = {"base": ((), {})}
    for form_name, form in (("literal", LITERAL), ("finetune", finetune_form)):
        for name in ("pfb", "cam", "ie", "gb"):
            runs[f"{name}_{form_name}"] = ((name,), form)
        runs[f"full_{form_name}"] = (("pfb", "cam", "ie", "gb"), form)
    # PFB's fine-tuning form without its 'out' layer: the feature blending alone
    runs["pfb_features_finetune"] = (("pfb",), {"pfb": {**finetune_form["pfb"], "layers": ["mid", "up0", "up1"]}})
    results = {}
    for name, (enabled, form) in runs.items():
        start = time.perf_counter()
        module = XMGIEModule(**{**hp, "modules": variant(hp["modules"], enabled, form), "init_from": None})
        load_base(module, args.base, module.hparams["generator"])
        module.data_info = dict(ckpt["xmgie"])
        module.data_info.pop("kind", None)
        if "ie" in enabled:
            module.load_identity_encoder(args.identity)
        record = evaluate_editor(module.eval(), split="test", limit=args.limit, identity=args.identity,
                                 inception=False, lpips=False)
        results[name] = {k: round(record["metrics"][k], 4) for k in REPORTED if k in record["metrics"]}
        print(f"{name:14s} " + "  ".join(f"{k} {v:.3f}" for k, v in results[name].items()) +
              f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"base": args.base, "limit": args.limit, "split": "test",
                               "finetune_form": finetune_form, "literal_form": LITERAL, "results": results},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
