"""Text-side conditioning: the CLIP text encoder (and, later, the instruction expander)."""
from xmgie.conditioning.text_encoder import TextEncoder, TextEncoderConfig

__all__ = ["TextEncoder", "TextEncoderConfig"]
