"""`xmgie evaluate`: edit a split with a trained checkpoint, compute the suite, write `results/<dataset>/<method>.json`.

A result file holds the metric values and everything needed to defend them: each metric's backbone
(pretrained file + sha256, or uncalibrated), the protocol, seeds, sampler settings, sample count, the
checkpoint's sha256 and the wall time. Tables are rendered only from these files.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from data_modules.registry import build_datamodule
from xmgie.editor import load_generator_module
from xmgie.errors import UserError
from xmgie.inference import default_device
from xmgie.metrics import networks
from xmgie.metrics.functional import grow_mask, mask_iou
from xmgie.metrics.metrics import EditingMetrics
from xmgie.metrics.networks import MetricNetwork
from xmgie.models.generator import EditGenerator
from xmgie.models.mask_net import mask_predictor
from xmgie.modules.mask_predictor import MaskPredictorConfig
from xmgie.weights import sha256_of

RESULT_FORMAT = 1
EVALUATION_MASKS = ("dataset", "auto", "anywhere")


def identity_backbone(identity: str | Path | None, strict: bool = False,
                      seed: int = 0) -> tuple[nn.Module, MetricNetwork] | None:
    """IPS's encoder: a project E_id file (`make train-identity`), or "vggface2" (the weights folder)."""
    from xmgie.modules.identity import load_identity_encoder

    if identity is None:
        return None
    if str(identity) == "vggface2":
        return networks.facenet(strict, seed)
    try:
        return load_identity_encoder(identity), networks.project_file("identity encoder", identity)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None


def attribute_backbone(path: str | Path | None) -> tuple[nn.Module, MetricNetwork] | None:
    """AA's classifier (`make train-attr`); its held-out accuracy is part of the record's source."""
    from xmgie.models.classifier import load_attribute_classifier

    if path is None:
        return None
    try:
        net, info = load_attribute_classifier(path)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    record = networks.project_file("attribute classifier", path)
    source = f"{path} ({info.get('arch')}, held-out accuracy {info.get('test_accuracy')})"
    return net, MetricNetwork(record.name, True, record.sha256, source)


def train_missing_networks(dm, identity: str | Path | None, attributes: str | Path | None,
                           log=lambda line: print(line, file=sys.stderr)) -> tuple[str | Path | None, ...]:
    """`--train-missing`: an E_id or attribute-classifier path whose file does not exist is trained first on the
    evaluated dataset (the stages' defaults) when it has those labels, else dropped with its metric (noted):
    IPS and AA then stay out of the record, as for a dataset without them. (identity, attributes) to use."""
    from xmgie.training.lit_attributes import train_attribute_classifier
    from xmgie.training.lit_identity import train_identity_encoder

    root = getattr(dm, "root", None)
    wanted = [("identity", identity, dm.num_identities, "IPS", train_identity_encoder),
              ("attribute", attributes, dm.num_attributes, "AA", train_attribute_classifier)]
    kept = []
    for what, path, labels, metric, train in wanted:
        if path is None or str(path) == "vggface2" or Path(path).exists():
            kept.append(path)
        elif labels > 0:
            log(f"training the {what} network first: {path}")
            train(dm.name, path, root=root)
            kept.append(path)
        else:
            log(f"{metric} not computed: {dm.name} has no {what} labels to train {path} on")
            kept.append(None)
    return tuple(kept)


def _truncate(batch: dict[str, Any], keep: int) -> dict[str, Any]:
    return {k: v[:keep] if isinstance(v, (list, torch.Tensor)) else v for k, v in batch.items()}


def evaluate_checkpoint(ckpt: str | Path, dataset: str | None = None, split: str = "test",
                        device: str | None = None, **options: Any) -> dict[str, Any]:
    """Load the editor in `ckpt` and `evaluate_editor` it (options: that function's keywords); the record adds the
    checkpoint's sha256 and, for a fine-tuned run, the base checkpoint it started from."""
    start = time.perf_counter()
    device = torch.device(device or default_device())
    module = load_generator_module(ckpt, device)
    result = evaluate_editor(module, dataset, split, device=device, **options)
    result["checkpoint"] = {"path": str(ckpt), "sha256": sha256_of(ckpt)}
    if getattr(module, "base_info", None):  # a fine-tuned run: the trained editor it started from
        result["base"] = module.base_info
    result["wall_time_s"] = round(time.perf_counter() - start, 1)
    return result


def evaluate_editor(module, dataset: str | None = None, split: str = "test", limit: int | None = None,
                    steps: int | None = None, batch_size: int = 32, seed: int = 0,
                    guidance_text: float | None = None, guidance_image: float | None = None,
                    identity: str | Path | None = None, attributes: str | Path | None = None,
                    inception: bool = True, lpips: bool = True, strict_weights: bool = False,
                    method: str = "xmgie", device: str | torch.device | None = None,
                    data_root: str | None = None, bf16: bool = False, masks: str = "dataset",
                    mask_settings: MaskPredictorConfig | None = None, dilate_masks: int = 0,
                    train_missing: bool = False) -> dict[str, Any]:
    """Edit `split` of `dataset` (default: the editor's) with `module` (an XMGIEModule or a GAN baseline, in eval
    mode, on `device`) and return the result record.

    1. Load the dataset; its `protocol` says what the edits are compared with.
    2. Build the suite (backbones from the weights folder, or uncalibrated; `strict_weights`: error instead).
    3. Edit every batch with seed + batch number (caption protocol: each image with another test image's caption,
       the dataset's seeded pairing) and stream the edits into the suite.
    4. Return metrics plus provenance.

    `device`: where the generator and the backbones run (default: CUDA when available, else CPU).
    `data_root`: where a dataset on disk lives (default: the root the checkpoint was trained from).
    `bf16`: edit under bfloat16 autocast (the full-scale model on a GPU); the metrics run in fp32.
    `masks`: what the editor is given: the dataset's masks, "auto" (predicted by the editor's own U-Net with
    `mask_settings`; the record gets their IoU with the dataset's) or "anywhere". The metrics always score against
    the dataset's masks. `dilate_masks`: the dataset's masks grown by that many pixels (< 0: shrunk; `grow_mask`)
    before the editor sees them, as a user paints generously or tightly. Whenever the given masks differ from the
    dataset's, the suite also scores the part of the given mask that should have stayed and the part of the edit it
    missed. `train_missing`: train a missing E_id / attribute classifier first (`train_missing_networks`).
    """
    if masks not in EVALUATION_MASKS:
        raise UserError(f"masks must be one of {', '.join(EVALUATION_MASKS)}, got {masks!r}")
    if dilate_masks and masks != "dataset":
        raise UserError(f"--mask-dilate grows the dataset's masks; it cannot be combined with --mask {masks}")
    predictor = mask_predictor(mask_settings) if masks == "auto" else None
    if predictor is not None and predictor.needs_generator and \
            not isinstance(getattr(module, "sampler", None), EditGenerator):
        raise UserError("automatic masks need a diffusion editor (this one is a one-pass GAN baseline) or a learned "
                        "mask predictor (--mask-net)")
    ious = []
    start = time.perf_counter()
    device = torch.device(device or default_device())
    info = module.data_info
    dataset = dataset or info.get("dataset", "shapes")
    root = data_root or (info.get("root") if dataset == info.get("dataset") else None)
    try:
        dm = build_datamodule(dataset, root=root, resolution=int(info.get("resolution", 32)), batch_size=batch_size)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None
    if train_missing:
        identity, attributes = train_missing_networks(dm, identity, attributes)
    suite = EditingMetrics(dm.protocol, inception=inception, lpips=lpips, strict=strict_weights, seed=seed,
                           attribute_classifier=attribute_backbone(attributes),
                           identity_encoder=identity_backbone(identity, strict_weights, seed)).to(device)
    n, skipped = 0, []
    with torch.no_grad():
        for i, batch in enumerate(dm.loader(split, shuffle=False, paired=dm.protocol == "captions")):
            skipped += batch.get("skipped", [])
            if "source" not in batch:
                continue
            if limit is not None:
                if n >= limit:
                    break
                batch = _truncate(batch, limit - n)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            given = dict(batch)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                if predictor is not None:
                    given["mask"] = predictor(getattr(module, "sampler", None), batch["source"],
                                              module.conditioning_texts(batch), seed + i)
                    ious.append(mask_iou(given["mask"], batch["mask"]))
                elif masks == "anywhere":
                    given["mask"] = torch.ones_like(batch["mask"])
                elif dilate_masks:
                    given["mask"] = grow_mask(batch["mask"], dilate_masks)
                edit = module.edit(given, steps=steps, seed=seed + i, guidance_text=guidance_text,
                                   guidance_image=guidance_image)
            other_masks = masks != "dataset" or dilate_masks != 0  # then also score what the given mask got wrong
            suite.update(edit, {**batch, "given_mask": given["mask"]} if other_masks else batch)
            n += edit.shape[0]
    if n == 0:
        raise UserError(f"the {split} split of {dataset!r} has no readable samples to evaluate")
    if skipped:
        print(f"warning: {len(skipped)} unreadable samples were skipped (first: {skipped[0]})", file=sys.stderr)
    s = module.sampling_cfg  # None: a one-pass editor (a GAN baseline), no DDIM steps, no guidance
    sampling = dict.fromkeys(("steps", "guidance_text", "guidance_image")) if s is None else {
        "steps": steps or s.steps, "guidance_text": s.guidance_text if guidance_text is None else guidance_text,
        "guidance_image": s.guidance_image if guidance_image is None else guidance_image}
    mask_record = {"source": masks, **({"dilate": dilate_masks} if dilate_masks else {})}
    if predictor is not None:
        mask_record |= dataclasses.asdict(predictor.cfg) | {"iou": float(torch.cat(ious).mean())}
    return {
        "format": RESULT_FORMAT, "method": method, "dataset": dataset, "split": split,
        **suite.record(suite.compute()), "seed": seed, **sampling,
        "masks": mask_record, **({"data_notes": dm.notes} if dm.notes else {}),
        "n_skipped": len(skipped), "device": str(device), "precision": "bf16" if bf16 else "fp32",
        "wall_time_s": round(time.perf_counter() - start, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_result(result: dict[str, Any], out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out
