"""How the four modules (PFB, CAM, IE, GB) plug into the generator: one small interface, no flags.

A plugin is an nn.Module (so its parameters train and checkpoint with the generator). The generator calls
`attach(unet)` once (install forward hooks or attention processors), `prepare(cond)` once per condition
(per-image work that every U-Net call of an edit shares), `condition(cond)` before every U-Net call,
`extend_context(features, cond)` to add conditioning tokens, and `postprocess(x0, cond)` on the generator's
image-space output (X_edit). A plugin with `needs_reference` gets a reference branch: the generator runs the
U-Net on the source as well, inside the plugin's `reference_phase`. A plugin with `blends_prediction` gets the
U-Net's prediction with the one that keeps the source exactly (`blend_prediction`). `losses` adds training terms.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn


@dataclass
class EditCondition:
    """What one U-Net call is conditioned on (all on the U-Net's device).

    source: (B, 3, H, W) in [-1, 1]; mask: (B, 1, H, W) in {0, 1}; tokens: (B, T) int64 instruction ids;
    text_dropped / image_dropped: (B,) bool, samples whose text / image condition is the null one;
    extras: per-sample tensors (B, ...) that plugins compute once in `prepare` (e.g. the identity embedding).
    """

    source: torch.Tensor
    mask: torch.Tensor
    tokens: torch.Tensor
    text_dropped: torch.Tensor
    image_dropped: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def rows(self, index: slice | torch.Tensor) -> "EditCondition":
        """The condition of a slice of the batch (or of the rows an int64 index tensor picks)."""
        fields = {f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self) if f.name != "extras"}
        return EditCondition(**fields, extras={k: v[index] for k, v in self.extras.items()})

    def cat(self, other: "EditCondition") -> "EditCondition":
        """This batch followed by `other` (same fields and extras)."""
        return EditCondition(**{f.name: torch.cat([getattr(self, f.name), getattr(other, f.name)])
                                for f in dataclasses.fields(self) if f.name != "extras"},
                             extras={k: torch.cat([v, other.extras[k]]) for k, v in self.extras.items()})


class StopUNet(Exception):
    """Raised by a plugin's hook in the 'record' phase once it has all it needs from the reference branch: the
    rest of that (gradient-free) U-Net pass is skipped."""


class EditPlugin(nn.Module):
    """Base class: every hook is the identity, so a plugin overrides only what it changes."""

    name = ""                 # the paper's short name: "pfb", "cam", "ie" or "gb"
    needs_reference = False
    blends_prediction = False
    active = True             # False inside `EditGenerator.modules_off`: the generator skips the plugin

    def reset(self) -> None:
        """Forget the state the last `condition` left, so that the plugin's hooks leave the U-Net as it is."""

    def attach(self, unet: nn.Module) -> None:
        """Install hooks / attention processors on `unet` (called once, on construction)."""

    def prepare(self, cond: EditCondition) -> None:
        """Add per-sample tensors to `cond.extras` (called once when a condition is made)."""

    def condition(self, cond: EditCondition) -> None:
        """Receive the condition of the U-Net call that follows."""

    def extend_context(self, features: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """(B, T, D) text features -> (B, T', D) features the cross-attention reads."""
        return features

    def blend_prediction(self, pred: torch.Tensor, known: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """(B, C, h, w) the U-Net's prediction and `known`, the prediction that keeps the source (its own target at
        this t and ε) -> the prediction used (only with `blends_prediction`)."""
        return pred

    def postprocess(self, x0: torch.Tensor, cond: EditCondition) -> torch.Tensor:
        """(B, 3, H, W) predicted clean image -> X_edit."""
        return x0

    def losses(self, x_edit: torch.Tensor, target: torch.Tensor, cond: EditCondition,
               weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Extra training terms, by the LossConfig name of their weight; `weights` (B,) ≥ 0: how much each row
        counts in the batch mean (None: equally)."""
        return {}

    def reference_phase(self, phase: str, shared: torch.Tensor | None = None
                        ) -> contextlib.AbstractContextManager[Any]:
        """Context for U-Net calls of the reference branch machinery (only with `needs_reference`). In the
        'batched' phase `shared` (B,) int64 says which of the reference rows (after the B edit rows) each edit
        row reads; None: one reference row per edit row, in order."""
        return contextlib.nullcontext()


@contextlib.contextmanager
def phases(plugins: list[EditPlugin], phase: str, shared: torch.Tensor | None = None) -> Iterator[None]:
    """Enter `reference_phase(phase, shared)` of every plugin."""
    with contextlib.ExitStack() as stack:
        for p in plugins:
            stack.enter_context(p.reference_phase(phase, shared))
        yield
