"""Progressive Feature Blending (PFB, §3.3, Eq. 5–6): at the mid block and decoder blocks, blend the edit
branch's features with those of a reference branch that denoises the source.

    F_B = A_l ⊙ F_G + (1 − A_l) ⊙ F_X,   A_l = α_l · M_l

F_G: edit-branch features, F_X: reference-branch features (the source noised to the same t with the same ε,
null instruction, no gradient), α_l a learnable scalar per layer, M_l the edit mask resized to the layer
(soft), ones when no mask is given (Eq. 5 literally). Outside the mask the source's features are kept exactly.

The last layer that can be blended is the prediction itself ('out'). There F_X is what a perfect reference
branch predicts, the source's own target at this t and ε, which the generator knows exactly: with the mask,
every DDIM step then keeps x_t outside the mask on the source's noising trajectory (latent blending, exact), and
no GroupNorm after the blend can carry the outside's statistics into the inside, as it does after 'mid'/'up<i>'.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmgie.modules.plugin import EditCondition, EditPlugin, StopUNet

PHASES = ("record", "edit", "batched")
OUT = "out"  # the prediction, blended with the source's exact target


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, h, w) soft mask: area average when shrinking, bilinear when enlarging."""
    if mask.shape[-2:] == size:
        return mask
    if size[0] <= mask.shape[-2] and size[1] <= mask.shape[-1]:
        return F.interpolate(mask, size=size, mode="area")
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=False)


def blend(f_gen: torch.Tensor, f_src: torch.Tensor, alpha: torch.Tensor | float,
          mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 5–6: A ⊙ f_gen + (1 − A) ⊙ f_src with A = alpha · mask_l.

    f_gen, f_src (B, C, h, w); alpha a scalar (tensor or float); mask (B, 1, H, W) in [0, 1] or None (ones).
    """
    a = torch.as_tensor(alpha, dtype=f_gen.dtype, device=f_gen.device)
    if mask is not None:
        a = a * resize_mask(mask.to(f_gen.dtype), tuple(f_gen.shape[-2:]))  # (B, 1, h, w)
    return f_src + a * (f_gen - f_src)


def blend_layers(unet: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """'mid' and 'up<i>' -> the U-Net's mid block and decoder block i (0 = next to the bottleneck); 'out' (the
    prediction, blended by the generator) has no block."""
    blocks = []
    for name in names:
        if name == OUT:
            continue
        if name == "mid":
            blocks.append(unet.mid_block)
        elif name.startswith("up") and name[2:].isdigit() and int(name[2:]) < len(unet.up_blocks):
            blocks.append(unet.up_blocks[int(name[2:])])
        else:
            raise ValueError(f"unknown PFB layer {name!r}: use 'mid', 'up0'..'up{len(unet.up_blocks) - 1}' or 'out'")
    return blocks


class ProgressiveFeatureBlending(EditPlugin):
    """PFB as a generator plugin. It asks the generator for a reference branch (`needs_reference`); during
    the reference pass ('record') its hooks store each blended layer's output, during the edit pass ('edit')
    they replace the output by `blend`; in 'batched' the U-Net runs both in one call ([edit rows; reference
    rows]) and each edit row is blended with its reference row (guidance branches that show the same image share
    one). With 'out' only, no reference branch runs: the
    generator hands `blend_prediction` the source's exact target.

    Args:
        layers: blended layers, 'mid', 'up<i>' (decoder blocks from the bottleneck outwards) and 'out' (the
            prediction).
        fixed_alpha: None: α_l learned (stored as a logit, starting at `alpha_init`); a number in [0, 1]: every
            α_l fixed to it (training-free PFB-Diff blends with α = 1: outside the mask only the source's features).
        alpha_init: the learned α_l's starting value in (0, 1): 0.5 is the paper's; near 1 keeps a trained
            editor's features inside the mask at the start of fine-tuning (PFB-Diff's blending).
    """

    name = "pfb"

    def __init__(self, layers: Sequence[str] = ("mid", "up0", "up1"), fixed_alpha: float | None = None,
                 alpha_init: float = 0.5):
        super().__init__()
        if not layers:
            raise ValueError("PFB needs at least one layer")
        if not 0 < alpha_init < 1:
            raise ValueError(f"PFB's alpha_init must be in (0, 1), got {alpha_init}")
        self.layers = tuple(layers)
        self.feature_layers = tuple(i for i, name in enumerate(self.layers) if name != OUT)  # indices into α
        self.needs_reference = bool(self.feature_layers)  # feature layers need the reference branch
        self.blends_prediction = OUT in self.layers
        self.fixed_alpha = fixed_alpha
        if fixed_alpha is None:
            logit = torch.logit(torch.tensor(float(alpha_init), dtype=torch.float64)).float()
            self.alpha_logit = nn.Parameter(logit.expand(len(self.layers)).clone())  # α = sigmoid(logit)
        else:
            if not 0 <= fixed_alpha <= 1:
                raise ValueError(f"PFB's fixed alpha must be in [0, 1], got {fixed_alpha}")
            self.register_buffer("alpha_fixed", torch.full((len(self.layers),), float(fixed_alpha)), persistent=False)
        self.phase: str | None = None
        self.mask: torch.Tensor | None = None
        self.recorded: dict[int, torch.Tensor] = {}
        self.shared: torch.Tensor | None = None  # 'batched': the reference row of each edit row

    @property
    def alpha(self) -> torch.Tensor:
        """(L,) α_l in (0, 1) (in [0, 1] when fixed)."""
        return torch.sigmoid(self.alpha_logit) if self.fixed_alpha is None else self.alpha_fixed

    def attach(self, unet: nn.Module) -> None:
        blocks = blend_layers(unet, self.layers)
        if not blocks:
            return
        order = [unet.mid_block, *unet.up_blocks]  # execution order of the blendable blocks
        last = max(order.index(b) for b in blocks)
        for i, block in zip(self.feature_layers, blocks):
            block.register_forward_hook(self._hook(i, stop=order.index(block) == last))

    def blend_prediction(self, pred: torch.Tensor, known: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """The 'out' layer: (B, C, h, w) prediction blended with `known`, the source's exact target (same shape)."""
        return blend(pred, known, self.alpha[self.layers.index(OUT)], cond.mask)

    def _hook(self, i: int, stop: bool):
        def hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor | None:
            if self.phase == "record":
                self.recorded[i] = output.detach()
                if stop and len(self.recorded) == len(self.feature_layers):
                    raise StopUNet
            elif self.phase == "edit":
                return blend(output, self.recorded[i], self.alpha[i], self.mask)
            elif self.phase == "batched":
                B = output.shape[0] // 2 if self.shared is None else self.shared.shape[0]
                edit, ref = output[:B], output[B:]
                mask = None if self.mask is None else self.mask[:B]
                own = ref if self.shared is None else ref.index_select(0, self.shared)  # (B, C, h, w)
                return torch.cat([blend(edit, own, self.alpha[i], mask), ref])
            return None
        return hook

    def condition(self, cond: EditCondition) -> None:
        self.mask = cond.mask

    @contextmanager
    def reference_phase(self, phase: str, shared: torch.Tensor | None = None) -> Iterator[None]:
        """Run the U-Net calls inside the block in `phase` ('record', 'edit' or 'batched'); `shared` as in
        `EditPlugin.reference_phase`."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self.phase, self.shared = phase, shared
        try:
            yield
        finally:
            self.phase, self.shared = None, None
            if phase != "record":
                self.recorded.clear()

    def extra_repr(self) -> str:
        return f"layers={self.layers}" + ("" if self.fixed_alpha is None else f", fixed_alpha={self.fixed_alpha}")
