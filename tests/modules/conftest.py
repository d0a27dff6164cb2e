import torch

from xmgie.conditioning import TextEncoderConfig
from xmgie.models.config import GeneratorConfig
from xmgie.models.generator import EditGenerator


def micro_generator(plugins=(), seed: int = 0, **overrides) -> EditGenerator:
    """The smallest generator (16 px in tests), seeded, in eval mode."""
    torch.manual_seed(seed)
    cfg = dict(size="micro", mask_channel=True, residual=True, prediction_type="sample",
               text=TextEncoderConfig(width=32, layers=1, heads=2)) | overrides
    return EditGenerator(GeneratorConfig(**cfg), list(plugins)).eval()


def edit_inputs(B: int = 2, res: int = 16, seed: int = 1):
    """source (B, 3, res, res) in [-1, 1], a rectangular mask, a noise tensor and timesteps (B,)."""
    torch.manual_seed(seed)
    src = torch.rand(B, 3, res, res) * 2 - 1
    mask = torch.zeros(B, 1, res, res)
    mask[..., 2:8, 3:10] = 1
    return src, mask, torch.randn(B, 3, res, res), torch.tensor([300, 700])[:B]
