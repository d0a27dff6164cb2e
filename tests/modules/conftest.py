import torch

from xmgie.conditioning import TextEncoderConfig
from xmgie.models.generator import EditGenerator, GeneratorConfig


def micro_generator(plugins=(), seed: int = 0, **overrides) -> EditGenerator:
    """The smallest generator (16 px in tests), seeded, in eval mode."""
    torch.manual_seed(seed)
    cfg = dict(size="micro", mask_channel=True, residual=True, prediction_type="sample",
               text=TextEncoderConfig(width=32, layers=1, heads=2)) | overrides
    return EditGenerator(GeneratorConfig(**cfg), list(plugins)).eval()
