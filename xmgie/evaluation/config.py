"""The options of `xmgie evaluate`, declared once (xmgie/stage_config.py makes them the command's)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class EvaluateStageConfig:
    """`xmgie evaluate`: edit a dataset split, compute IS/FID/LPIPS/SSIM/PSNR(/AA/IPS), write JSON.

    Attributes:
        ckpt: generator checkpoint or exported folder.
        trust_checkpoint: unpickle the checkpoint fully, as older versions did: only for files you made yourself
            (by default only tensors and plain data are read, so nothing in a file can run).
        dataset: dataset name (default: the one the checkpoint was trained on).
        split: the split edited.
        limit: edit at most this many images.
        steps: DDIM steps (default: the checkpoint's).
        guidance_text: s_T (default: the checkpoint's).
        guidance_image: s_I (default: the checkpoint's).
        batch_size: images per batch.
        seed: the seed of the edits' noise (batch i uses seed + i).
        identity: IPS encoder: an E_id file (make train-identity) or 'vggface2'.
        attributes: AA classifier file (make train-attr).
        train_missing: train a missing --identity / --attributes file first on the dataset; where it has no such
            labels, leave IPS / AA out.
        inception: IS and FID (--no-inception skips the slowest metrics).
        lpips: LPIPS (--no-lpips skips it).
        strict_weights: a missing pretrained backbone is an error instead of an uncalibrated metric.
        device: cpu, cuda, cuda:1 … (default: cuda when available).
        data_root: where the dataset lives (default: the root the checkpoint was trained on).
        bf16: edit under bfloat16 autocast (GPUs; the ip2p model).
        masks: what the editor is given: the dataset's masks, predicted ones (their IoU is recorded) or none
            ('anywhere'); the metrics always score against the dataset's masks.
        mask_threshold: τ on the normalised relevance map (--mask auto).
        mask_timestep: noise level of the relevance map, fraction of T (--mask auto).
        mask_draws: noise draws averaged (DiffEdit; 1: Watch Your Steps) (--mask auto).
        mask_smooth: Gaussian σ (working-resolution px) on the map (--mask auto).
        dilate_masks: grow the dataset's masks by this many pixels before the editor sees them (a generous
            painting; negative: shrink them, a tight one); the metrics still score against the dataset's masks.
        mask_net: a learned mask predictor (make train-mask) used by --mask auto instead of the editor's relevance
            map; --mask-threshold then applies to its probabilities.
        method: method name: results/<dataset>/<name>.json.
        out: output JSON path (overrides --name).
    """

    ckpt: str
    trust_checkpoint: bool = False
    dataset: str | None = None
    split: Literal["test", "val", "train"] = "test"
    limit: int | None = None
    steps: int | None = None
    guidance_text: float | None = None
    guidance_image: float | None = None
    batch_size: int = 32
    seed: int = 0
    identity: str | None = None
    attributes: str | None = None
    train_missing: bool = False
    inception: bool = True
    lpips: bool = True
    strict_weights: bool = False
    device: str | None = None
    data_root: str | None = None
    bf16: bool = False
    masks: Literal["dataset", "auto", "anywhere"] = field(default="dataset", metadata={"flag": "--mask"})
    mask_threshold: float = 0.5
    mask_timestep: float = 0.8
    mask_draws: int = 1
    mask_smooth: float = 0.0
    dilate_masks: int = field(default=0, metadata={"flag": "--mask-dilate"})
    mask_net: str | None = None
    method: str = field(default="xmgie", metadata={"flag": "--name"})
    out: str | None = None
