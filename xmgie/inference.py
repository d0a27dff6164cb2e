"""EditPipeline: one user image + prompt (+ mask) -> the edited image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from xmgie.errors import UserError

SINGLE_CHANNEL_MODES = ("1", "L", "I", "I;16", "F")


def _open(path: str | Path, what: str) -> Image.Image:
    """Fully decoded PIL image at `path`; a missing or unreadable file is a UserError naming `what`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UserError(f"cannot read {what} {path}: {err}") from None


def read_image(path: str | Path) -> Image.Image:
    """An RGB PIL image."""
    return _open(path, "image").convert("RGB")


def read_mask(path: str | Path) -> Image.Image:
    """A single-channel mask image (white = may change); anything else is a UserError."""
    mask = _open(path, "mask")
    if mask.mode not in SINGLE_CHANNEL_MODES:
        raise UserError(f"mask {path} must be a single-channel (grayscale) image, got mode {mask.mode} "
                        f"with {len(mask.getbands())} channels")
    return mask


def image_to_tensor(img: Image.Image, resolution: int) -> torch.Tensor:
    """PIL RGB -> (1, 3, R, R) float in [-1, 1] (bicubic resize)."""
    arr = np.asarray(img.convert("RGB").resize((resolution, resolution), Image.BICUBIC), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1


def mask_to_tensor(mask: Image.Image, resolution: int) -> torch.Tensor:
    """PIL single-channel -> (1, 1, R, R) in {0, 1}: resized, then thresholded at half the mode's range."""
    arr = np.asarray(mask.convert("F").resize((resolution, resolution), Image.BILINEAR), dtype=np.float32)
    peak = {"1": 1.0, "L": 255.0, "I;16": 65535.0}.get(mask.mode, max(float(arr.max()), 1e-6))
    return torch.from_numpy((arr / peak >= 0.5).astype(np.float32))[None, None]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class EditPipeline:
    """Edits images with a trained generator (the EMA weights) at its working resolution; the result is
    resized back to the input's size."""

    def __init__(self, module, expander=None, bf16: bool = False):
        """`expander`: an InstructionExpander that turns the prompt into the instruction (None: the prompt is
        the instruction); `bf16`: run the generator under bfloat16 autocast."""
        self.module = module.eval()
        self.expander = expander.to(next(module.parameters()).device) if expander is not None else None
        self.resolution = int(module.data_info.get("resolution", 32))
        self.device = next(module.parameters()).device
        self.bf16 = bf16

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu",
                        expander: str | Path | None = None, bf16: bool = False) -> "EditPipeline":
        from xmgie.checkpoints import load_generator_module
        from xmgie.conditioning.instruction import load_expander

        try:
            mllm = load_expander(expander, device) if expander else None
        except (FileNotFoundError, ValueError) as err:
            raise UserError(str(err)) from None
        return cls(load_generator_module(path, device), mllm, bf16)

    def instruction(self, image: Image.Image, prompt: str, num_beams: int = 1) -> str:
        """The expressive instruction for `prompt` on `image` (Eq. 1), or the prompt without an expander."""
        if self.expander is None:
            return prompt
        src = image_to_tensor(image, self.resolution).to(self.device)
        return self.expander.generate(src, [prompt], num_beams=num_beams, no_repeat_ngram_size=3 if num_beams > 1
                                      else 0)[0]

    def __call__(self, image: Image.Image, instruction: str, mask: Image.Image | None = None, steps: int | None = None,
                 guidance_text: float | None = None, guidance_image: float | None = None,
                 seed: int = 0) -> Image.Image:
        src = image_to_tensor(image, self.resolution).to(self.device)
        m = (mask_to_tensor(mask, self.resolution) if mask is not None else torch.ones(1, 1, *src.shape[-2:]))
        batch = {"source": src, "mask": m.to(self.device), "instruction": [instruction], "prompt": [instruction]}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.module.edit(batch, steps=steps, seed=seed, guidance_text=guidance_text,
                                   guidance_image=guidance_image, texts=[instruction])
        arr = ((out[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(arr).resize(image.size, Image.BICUBIC)
