"""The generator built from its typed configs, with the enabled modules plugged in (training and editing)."""
from __future__ import annotations

from xmgie.models.backbone import build_backbone
from xmgie.models.config import GeneratorConfig
from xmgie.models.generator import EditGenerator
from xmgie.modules.config import ModulesConfig, build_plugins


def build_generator(generator: GeneratorConfig, modules: ModulesConfig,
                    share: EditGenerator | None = None) -> EditGenerator:
    """The generator with the enabled modules plugged in. `share`: a generator whose frozen parts (VAE, frozen
    text tower) this one reuses instead of loading its own (the EMA copy)."""
    backbone = build_backbone(generator, share.backbone() if share is not None else None)
    plugins = build_plugins(modules, backbone.text_encoder.width, backbone.special_tokens)
    return EditGenerator(generator, plugins, backbone)
