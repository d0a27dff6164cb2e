"""The generator, its U-Net sizes, the discriminator and the losses."""
from xmgie.models.discriminator import PatchDiscriminator
from xmgie.models.config import GeneratorConfig
from xmgie.models.generator import EditGenerator
from xmgie.models.unet_sizes import UNET_SIZES, build_unet
from xmgie.modules.plugin import EditCondition, EditPlugin

__all__ = ["UNET_SIZES", "EditCondition", "EditGenerator", "EditPlugin", "GeneratorConfig", "PatchDiscriminator",
           "build_unet"]
