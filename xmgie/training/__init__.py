"""LightningModules and callbacks of the training stages."""
from xmgie.training.generator_module import XMGIEModule

__all__ = ["XMGIEModule"]
