"""Editing photos larger than the model's working resolution, with given and predicted masks.

    python benchmarks/photo_edits.py --ckpt runs/shapes/default/checkpoints/last.ckpt [--limit 128] [--photo 128]
        [--mask-net runs/shapes/mask/mask_net.pt]

`shapes` renders the same test edits at any size, so the photo (source, target, mask at --photo px) has a true
full-resolution answer while the model works at its own resolution (32 px for `make train`). Measured:
1. automatic masks (relevance maps of the editor's U-Net; with --mask-net, the learned predictor's too) against
   the true masks, for several settings: IoU,
   precision, recall, share of the photo, overall and per edit kind, and the cost of one prediction against one
   DDIM step and one whole edit, measured side by side;
2. the edit made under the true mask and brought back to the photo's size in three ways — the whole result
   resized (bicubic), the edit's change composited onto the photo with all of the photo's detail (the default),
   and with the detail dropped where the edit changed a pixel — scored against the target at full size;
3. the same edits under the predicted mask and under "anywhere".
Writes benchmarks/results/photo_edits.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_modules.registry import build_datamodule  # noqa: E402
from xmgie.compositing import DETAIL_CHANGE, composite  # noqa: E402
from xmgie.inference import EditPipeline, EditRequest, image_to_tensor, mask_image, tensor_to_image  # noqa: E402
from xmgie.metrics.functional import mask_scores, psnr_per_image  # noqa: E402
from xmgie.models.mask_net import mask_predictor  # noqa: E402
from xmgie.modules.mask_predictor import MaskPredictorConfig, threshold  # noqa: E402

SETTINGS = {  # name -> MaskPredictorConfig fields
    "wys t0.8": {}, "wys t0.8 smooth1": {"smooth": 1.0}, "wys t0.5": {"timestep": 0.5},
    "wys t0.8 tau0.3 smooth1": {"threshold": 0.3, "smooth": 1.0},
    "diffedit n8 t0.8 smooth1": {"draws": 8, "smooth": 1.0},
    "diffedit n8 t0.95 smooth1": {"draws": 8, "timestep": 0.95, "smooth": 1.0},
}


def edit_kind(prompt: str) -> str:
    """The `shapes` edit a prompt asks for (recolour, background, move, resize, hat)."""
    if prompt.startswith("move"):
        return "move"
    if "background" in prompt:
        return "background"
    if "hat" in prompt:
        return "hat"
    return "resize" if prompt.endswith(("smaller", "bigger")) else "recolour"


def psnrs(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    return {"psnr": float(psnr_per_image(x, target).mean()),
            "psnr_inside": float(psnr_per_image(x, target, mask).mean()),
            "psnr_outside": float(psnr_per_image(x, target, 1 - mask).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--limit", type=int, default=128)
    ap.add_argument("--photo", type=int, default=128, help="photo size in pixels")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--mask-net", help="a learned mask predictor (make train-mask): scored and edited with too")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/photo_edits.json"))
    args = ap.parse_args()
    settings = {**SETTINGS, **({"learned": {"net": args.mask_net}} if args.mask_net else {})}
    pipe = EditPipeline.from_checkpoint(args.ckpt)
    dm = build_datamodule("shapes", resolution=args.photo)
    dm.setup("test")
    data = dm.dataset("test")
    samples = [data[i] for i in range(min(args.limit, len(data)))]
    photos = [tensor_to_image(s.source) for s in samples]
    target = torch.stack([s.target for s in samples])
    true_full = torch.stack([s.mask for s in samples]).float()
    r = pipe.resolution
    true_work = (F.interpolate(true_full, size=(r, r), mode="area") >= 0.5).float()
    batches = range(0, len(samples), args.batch_size)
    result = {"ckpt": args.ckpt, "images": len(samples), "photo_px": args.photo, "working_px": r,
              "threads": torch.get_num_threads()}

    # 1. automatic masks against the true ones (same instructions as the edits below)
    sources = torch.cat([image_to_tensor(p, r) for p in photos])
    texts = [s.instruction for s in samples]
    kinds = [edit_kind(s.prompt) for s in samples]
    result["kinds"] = {k: kinds.count(k) for k in sorted(set(kinds))}
    for name, fields in settings.items():
        predictor = mask_predictor(MaskPredictorConfig(**fields))
        start = time.perf_counter()
        soft = torch.cat([predictor.soft(pipe.diffusion, sources[b:b + args.batch_size],
                                         texts[b:b + args.batch_size]) for b in batches])
        seconds = time.perf_counter() - start
        full = threshold(F.interpolate(soft, size=(args.photo,) * 2, mode="bilinear", align_corners=False),
                         predictor.cfg.threshold)
        work = threshold(soft, predictor.cfg.threshold)
        per_kind = {k: mask_scores(work[[i for i, x in enumerate(kinds) if x == k]],
                                   true_work[[i for i, x in enumerate(kinds) if x == k]]) for k in result["kinds"]}
        result.setdefault("masks", {})[name] = {**mask_scores(work, true_work), "per_kind": per_kind,
                                                "full_resolution": mask_scores(full, true_full),
                                                "ms_per_image": 1000 * seconds / len(samples), **fields}
        print(name, result["masks"][name], flush=True)
    start = time.perf_counter()
    for b in batches:  # one DDIM step of the same edit, for the cost comparison
        pipe.editor.edit({"source": sources[b:b + args.batch_size], "mask": true_work[b:b + args.batch_size]},
                         steps=1, texts=texts[b:b + args.batch_size])
    result["ddim_step_ms_per_image"] = 1000 * (time.perf_counter() - start) / len(samples)
    start = time.perf_counter()
    for b in batches:  # the whole edit at the checkpoint's steps
        pipe.editor.edit({"source": sources[b:b + args.batch_size], "mask": true_work[b:b + args.batch_size]},
                         texts=texts[b:b + args.batch_size])
    result["edit_ms_per_image"] = 1000 * (time.perf_counter() - start) / len(samples)
    result["edit_steps"] = pipe.editor.sampling_cfg.steps

    # 2. and 3. edits under the true, predicted and anywhere masks, brought back to the photo's size
    copy = torch.stack([s.source for s in samples])
    result["copy_source"] = psnrs(copy, target, true_full)
    default = "wys t0.8"
    learned = EditPipeline(pipe.editor, masks=MaskPredictorConfig(net=args.mask_net)) if args.mask_net else None
    ways_of_masking = [("true", None, pipe), (f"auto ({default})", "auto", pipe), ("anywhere", "anywhere", pipe)]
    ways_of_masking += [("auto (learned)", "auto", learned)] if learned else []
    for mask_name, mode, editing in ways_of_masking:
        requests = [EditRequest(p, t, mode or mask_image(m))
                    for p, t, m in zip(photos, texts, true_full)]
        work = [editing.working_edits(requests[b:b + args.batch_size]) for b in batches]
        edits = torch.cat([w.edits for w in work])
        small_sources = torch.cat([w.sources for w in work])
        full_masks = torch.cat([m for w in work for m in w.full_masks])
        ways = {"resized": F.interpolate(edits, size=(args.photo,) * 2, mode="bicubic", align_corners=False)
                .clamp(-1, 1)}
        for way, change in (("composite, all detail", None), (f"composite, detail dropped at change {DETAIL_CHANGE}",
                                                              DETAIL_CHANGE)):
            sigmas = pipe.seam_sigmas((args.photo, args.photo))
            ways[way] = torch.cat([composite(copy[i:i + 1], edits[i:i + 1], small_sources[i:i + 1],
                                             full_masks[i:i + 1], *sigmas, change=change)
                                   for i in range(len(samples))])
        for way, x in ways.items():
            scores = psnrs(x, target, true_full)
            scores["psnr_gain"] = scores["psnr"] - result["copy_source"]["psnr"]
            result.setdefault("edits", {}).setdefault(mask_name, {})[way] = scores
            print(mask_name, way, scores, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
