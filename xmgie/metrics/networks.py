"""The frozen networks behind the metrics, built from the weights folder or, when a file is missing, from a
seeded random initialisation that is marked **uncalibrated** (docs/evaluation.md; `strict=True` makes that an error).

Each builder returns the network and a `MetricNetwork` record that travels into every result and table footnote.
A user's downloaded file and a test's random-weights file in the same format take the same code path.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator
from unittest import mock

import torch
from torch import nn

from xmgie import weights
from xmgie.weights import sha256_of

INCEPTION_FEATURES = ("2048", "logits_unbiased")  # FID pool features, IS logits (torch-fidelity's choice)


@dataclass(frozen=True)
class MetricNetwork:
    """What a metric was computed with."""

    name: str                 # registry name ("inception", "alexnet", "vggface2") or "project"
    calibrated: bool          # pretrained weights (True) or a seeded random initialisation (False)
    sha256: str | None        # of the file loaded; None when random
    source: str               # the file, or "random init (seed N)"

    def describe(self) -> str:
        if not self.calibrated:
            return f"{self.name}: UNCALIBRATED ({self.source})"
        return f"{self.name}: {self.source} (sha256 {self.sha256[:12]})" if self.sha256 else f"{self.name}: {self.source}"

    def as_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Random initialisation that is the same on every run and every DDP rank, without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _resolve(name: str, strict: bool, seed: int) -> tuple[Path | None, MetricNetwork]:
    """The weights file of `name` (None: missing, use random init) and its MetricNetwork record."""
    found = weights.check(name) if strict else weights.locate(name)
    if found is None:
        return None, MetricNetwork(name, False, None, f"random init (seed {seed}); {weights.path_of(name)} missing")
    path, digest = found
    return path, MetricNetwork(name, True, digest, str(path))


def variance_preserving_init(net: nn.Module) -> nn.Module:
    """He-normal convolutions and 1/√fan_in linears. PyTorch's default init shrinks the signal by ~3× per layer,
    so a 48-layer random Inception outputs ~1e-8 everywhere (FID 0, IS 1 for any images); with this init the
    uncalibrated features still tell images apart."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=m.weight.shape[1] ** -0.5)
            nn.init.zeros_(m.bias)
    return net


def _freeze(net: nn.Module) -> nn.Module:
    return net.requires_grad_(False).eval()


def inception(strict: bool = False, seed: int = 0) -> tuple[nn.Module, MetricNetwork]:
    """torch-fidelity's Inception-v3: uint8 (B, 3, H, W) -> (pool (B, 2048), logits_unbiased (B, 1008))."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    path, info = _resolve("inception", strict, seed)
    # The constructor insists on loading weights (from a URL when given no path): build it empty, load ourselves.
    with seeded(seed), mock.patch.object(tfi, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", return_value=None):
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", list(INCEPTION_FEATURES))
        if path is None:
            variance_preserving_init(net)
    if path is not None:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    # channels-last convolutions: 1.46× faster on the 2-core CPU (50 images: 4.56 vs 6.66 s), outputs equal to 2e-6
    return _freeze(net.to(memory_format=torch.channels_last)), info


def alexnet_lpips(strict: bool = False, seed: int = 0) -> tuple[nn.Module, MetricNetwork]:
    """lpips.LPIPS with the AlexNet backbone; the calibrated linear heads ship inside the lpips package.
    Input: two (B, 3, H, W) in [-1, 1]; output (B, 1, 1, 1) distances."""
    import lpips

    path, info = _resolve("alexnet", strict, seed)
    with seeded(seed), contextlib.redirect_stdout(None):
        net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)  # torchvision AlexNet state dict
        # lpips keeps AlexNet's `features.<i>` modules under `slice<k>.<i>`: copy the conv weights by index.
        mapped = {f"{prefix}.{i}.{kind}": state[f"features.{i}.{kind}"]
                  for prefix, _ in net.net.named_children() for i, _ in getattr(net.net, prefix).named_children()
                  for kind in ("weight", "bias") if f"features.{i}.{kind}" in state}
        missing = [k for k, _ in net.net.named_parameters() if k not in mapped]
        if missing:
            raise ValueError(f"{path} is not a torchvision AlexNet state dict (no {missing[0]} counterpart)")
        net.net.load_state_dict(mapped, strict=True)
    return _freeze(net), info


def facenet(strict: bool = False, seed: int = 0) -> tuple[nn.Module, MetricNetwork]:
    """The VGGFace2 InceptionResnetV1 as an identity encoder (see xmgie.modules.identity.FaceNetIdentity)."""
    from xmgie.modules.identity import FaceNetIdentity, load_identity_weights

    path, info = _resolve("vggface2", strict, seed)
    with seeded(seed):
        encoder = FaceNetIdentity()
    if path is not None:
        load_identity_weights(encoder, path)
    return _freeze(encoder), info


def project_file(kind: str, path: str | Path) -> MetricNetwork:
    """Record for a network the project trained itself (E_id, the attribute classifier)."""
    return MetricNetwork(kind, True, sha256_of(path), str(path))
