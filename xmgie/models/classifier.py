"""The attribute classifier behind AA (docs/evaluation.md): a multi-label network trained by the project on a dataset's
attribute annotations. Named architectures in one table; files carry their architecture and attribute count."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn


def _resnet18(num_attributes: int) -> nn.Module:
    return torchvision.models.resnet18(weights=None, num_classes=num_attributes)  # no pretrained weights


def _small_cnn(num_attributes: int, width: int = 32) -> nn.Module:
    def block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU()]

    return nn.Sequential(*block(3, width, 1), *block(width, width, 2), *block(width, 2 * width, 2),
                         *block(2 * width, 2 * width, 2), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, num_attributes))


CLASSIFIERS: dict[str, Callable[[int], nn.Module]] = {"resnet18": _resnet18, "cnn": _small_cnn}


def build_attribute_classifier(arch: str, num_attributes: int) -> nn.Module:
    """(B, 3, H, W) in [-1, 1] -> (B, A) logits; attribute a is predicted present when its logit > 0."""
    if arch not in CLASSIFIERS:
        raise ValueError(f"attribute classifier must be one of {tuple(CLASSIFIERS)}, got {arch!r}")
    if num_attributes < 1:
        raise ValueError("the dataset has no attributes to classify")
    return CLASSIFIERS[arch](num_attributes)


def save_attribute_classifier(net: nn.Module, path: str | Path, arch: str, num_attributes: int, **info) -> Path:
    """Write {kind, arch, num_attributes, state_dict, **info} with torch.save."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "attribute_classifier", "arch": arch, "num_attributes": num_attributes,
                "state_dict": net.state_dict(), **info}, path)
    return path


def load_attribute_classifier(path: str | Path) -> tuple[nn.Module, dict]:
    """A frozen classifier and the file's other fields (dataset, test accuracy …). Errors name the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"attribute classifier not found: {path} (run `make train-attr DATASET=<dataset>`)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("kind") != "attribute_classifier":
        raise ValueError(f"{path} is not an attribute classifier file (written by `xmgie attributes train`)")
    net = build_attribute_classifier(blob["arch"], int(blob["num_attributes"]))
    net.load_state_dict(blob["state_dict"])
    info = {k: v for k, v in blob.items() if k not in ("state_dict", "kind")}
    return net.requires_grad_(False).eval(), info
