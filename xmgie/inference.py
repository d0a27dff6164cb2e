"""EditPipeline: user photos + prompts (+ masks, or masks it predicts) -> the edited photos, at their own size.

The model edits each photo at its working resolution; the result is composited onto the photo (compositing.py):
outside the edit mask the photo's own pixels, inside the edit with the photo's detail, the seam smoothed by GB.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from xmgie.compositing import composite
from xmgie.errors import UserError
from xmgie.models.generator import EditGenerator
from xmgie.models.mask_net import mask_predictor
from xmgie.modules.gaussian_blur import GaussianBlur
from xmgie.modules.mask_predictor import MaskPredictorConfig, threshold

SINGLE_CHANNEL_MODES = ("1", "L", "I", "I;16", "F")
PHOTO_METADATA = ("icc_profile", "exif")  # what an edit keeps of its photo: colour profile, camera data
JPEG_OPTIONS = {"quality": 95, "subsampling": 0}  # PIL's default (75, 4:2:0) would blur every pixel, outside too


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
    """An RGB PIL image, upright: an EXIF orientation (a phone photo taken sideways) is applied and dropped from
    the EXIF data, which `info` keeps with the colour profile."""
    return ImageOps.exif_transpose(_open(path, "image")).convert("RGB")


def photo_metadata(image: Image.Image) -> dict[str, bytes]:
    """The PHOTO_METADATA entries `image.info` carries (empty ones left out)."""
    return {k: image.info[k] for k in PHOTO_METADATA if image.info.get(k)}


def save_image(image: Image.Image, path: str | Path) -> None:
    """Write an edit (or a mask) with the metadata its `info` carries (PHOTO_METADATA); JPEG at JPEG_OPTIONS."""
    options = photo_metadata(image)
    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        options.update(JPEG_OPTIONS)
    image.save(path, **options)


def read_mask(path: str | Path) -> Image.Image:
    """A single-channel mask image (white = may change), upright as `read_image`; anything else is a UserError."""
    mask = ImageOps.exif_transpose(_open(path, "mask"))
    if mask.mode not in SINGLE_CHANNEL_MODES:
        raise UserError(f"mask {path} must be a single-channel (grayscale) image, got mode {mask.mode} "
                        f"with {len(mask.getbands())} channels")
    return mask


def image_to_tensor(img: Image.Image, resolution: int | None) -> torch.Tensor:
    """PIL RGB -> (1, 3, R, R) float in [-1, 1] (bicubic resize); resolution None keeps the image's size."""
    img = img.convert("RGB")
    if resolution is not None:
        img = img.resize((resolution, resolution), Image.BICUBIC)
    arr = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1


def mask_to_tensor(mask: Image.Image, resolution: int | tuple[int, int]) -> torch.Tensor:
    """PIL single-channel -> (1, 1, h, w) in {0, 1} (a resolution R means R×R; (w, h) a PIL size): resized, then
    thresholded at half the mode's range."""
    size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    arr = np.asarray(mask.convert("F").resize(size, Image.BILINEAR), dtype=np.float32)
    peak = {"1": 1.0, "L": 255.0, "I;16": 65535.0}.get(mask.mode, max(float(arr.max()), 1e-6))
    return torch.from_numpy((arr / peak >= 0.5).astype(np.float32))[None, None]


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB PIL image."""
    return Image.fromarray(((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy())


def mask_image(m: torch.Tensor) -> Image.Image:
    """(1, H, W) in {0, 1} -> 'L' PIL image, 255 where the edit may change the photo."""
    return Image.fromarray((m[0].float() * 255).round().byte().cpu().numpy(), mode="L")


MASK_MODES = ("auto", "anywhere")  # besides a mask image: predict it, or let the edit change the whole photo
PAPER_GB = (5.0, 10.0, 256)          # σ_max, σ_s in pixels at 256 px (§4.4), for editors without GB


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class EditRequest:
    """One photo to edit: the prompt, and a mask image, "auto" (predicted) or "anywhere"; `instruction`, when
    given, is what the generator reads instead of the prompt's expansion."""

    image: Image.Image
    prompt: str
    mask: Image.Image | str = "auto"
    instruction: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.mask, str) and self.mask not in MASK_MODES:
            raise UserError(f"mask must be an image, 'auto' or 'anywhere', got {self.mask!r}")


@dataclass
class EditResult:
    """The edited photo at its own size; the mask it was edited under ('L', 255 = may change) and where that
    mask came from ("given", "auto", "anywhere", or "auto found no region, so anywhere"); the instruction the
    generator read."""

    image: Image.Image
    mask: Image.Image
    mask_source: str
    instruction: str


@dataclass
class WorkingEdits:
    """A batch at the working resolution r: instructions, sources and masks (B, 3|1, r, r), the full-resolution
    masks (1, 1, H_i, W_i) and their sources, the edits (B, 3, r, r) in [-1, 1]; on the CPU."""

    texts: list[str]
    sources: torch.Tensor
    masks: torch.Tensor
    full_masks: list[torch.Tensor]
    mask_sources: list[str]
    edits: torch.Tensor


class EditPipeline:
    """Edits photos with a trained editor (`xmgie.editor.load_editor`; the EMA weights) at its working resolution
    and composites each edit onto its photo at the photo's size.

    Args:
        editor: a DiffusionEditor, or a GAN baseline module (these take no predicted masks).
        expander: an InstructionExpander that turns the prompt into the instruction (None: the prompt is it).
        bf16: run the generator under bfloat16 autocast.
        masks: settings of the automatic masks (relevance maps of the editor's own U-Net).
    """

    def __init__(self, editor, expander=None, bf16: bool = False, masks: MaskPredictorConfig | None = None):
        self.editor = editor.eval()
        self.device = next(editor.parameters()).device
        self.expander = expander.to(self.device) if expander is not None else None
        self.resolution = int(editor.data_info.get("resolution", 32))
        self.bf16 = bf16
        self.mask_predictor = mask_predictor(masks)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", expander: str | Path | None = None,
                        bf16: bool = False, masks: MaskPredictorConfig | None = None) -> "EditPipeline":
        from xmgie.editor import load_editor

        instructions = None
        if expander:
            from xmgie.conditioning.expander import load_expander

            try:
                instructions = load_expander(expander, device)
            except (FileNotFoundError, ValueError) as err:
                raise UserError(str(err)) from None
        return cls(load_editor(path, device), instructions, bf16, masks)

    @property
    def diffusion(self) -> EditGenerator | None:
        """The generator whose U-Net predicts masks (None for the one-pass GAN baselines)."""
        sampler = getattr(self.editor, "sampler", None)
        return sampler if isinstance(sampler, EditGenerator) else None

    @property
    def module_names(self) -> list[str]:
        """The editor's modules ("pfb", "cam", "ie", "gb"), in its order."""
        return [p.name for p in self.diffusion.plugins] if self.diffusion is not None else []

    def instruction(self, image: Image.Image, prompt: str, num_beams: int = 1) -> str:
        """The expressive instruction for `prompt` on `image` (Eq. 1), or the prompt without an expander."""
        if self.expander is None:
            return prompt
        src = image_to_tensor(image, self.resolution).to(self.device)
        return self.expander.generate(src, [prompt], num_beams=num_beams, no_repeat_ngram_size=3 if num_beams > 1
                                      else 0)[0]

    def instructions(self, requests: list[EditRequest], num_beams: int = 1) -> list[str]:
        """What the generator reads for each request: its given instruction, else its prompt's expansion."""
        return [r.instruction if r.instruction is not None else self.instruction(r.image, r.prompt, num_beams)
                for r in requests]

    @torch.no_grad()
    def mask_of(self, request: EditRequest, seed: int = 0, num_beams: int = 1) -> tuple[Image.Image, str]:
        """The full-resolution mask an edit of `request` would use ('L', 255 = may change) and where it came from."""
        source = image_to_tensor(request.image, self.resolution).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            _, full, how = self._masks([request], source, self.instructions([request], num_beams), seed)[0]
        return mask_image(full[0]), how

    def seam_sigmas(self, size: tuple[int, int]) -> tuple[float, float]:
        """GB's σ_max, σ_s in pixels of a photo of `size`: the editor's own GB scaled from its working
        resolution, else the paper's values scaled from 256 px."""
        plugins = self.diffusion.active_plugins if self.diffusion is not None else ()
        gb = next((p for p in plugins if isinstance(p, GaussianBlur)), None)
        sigma_max, sigma_s, at = (gb.sigma_max, gb.sigma_s, self.resolution) if gb else PAPER_GB
        scale = max(size) / at
        return sigma_max * scale, sigma_s * scale

    def _masks(self, requests: list[EditRequest], sources: torch.Tensor, texts: list[str],
               seed: int) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
        """Per request: the working-resolution mask (1, 1, r, r), the full-resolution one (1, 1, H, W), its source."""
        auto = [i for i, r in enumerate(requests) if isinstance(r.mask, str) and r.mask == "auto"]
        soft = {}
        if auto:
            if self.diffusion is None and self.mask_predictor.needs_generator:
                raise UserError("automatic masks need a diffusion editor or a learned mask predictor (--mask-net); "
                                "give this one a mask image or 'anywhere' (--mask PATH / --mask anywhere)")
            maps = self.mask_predictor.soft(self.diffusion, sources[auto], [texts[i] for i in auto], seed)
            soft = dict(zip(auto, maps[:, None]))
        tau = self.mask_predictor.cfg.threshold
        out = []
        for i, r in enumerate(requests):
            W, H = r.image.size
            anywhere = (torch.ones(1, 1, self.resolution, self.resolution), torch.ones(1, 1, H, W))
            if i in soft:
                work = threshold(soft[i], tau)
                if work.amax() == 0:  # the map found nothing: edit as with no mask
                    out.append((*anywhere, "auto found no region, so anywhere"))
                    continue
                full = F.interpolate(soft[i], size=(H, W), mode="bilinear", align_corners=False)
                out.append((work.cpu(), threshold(full, tau).cpu(), "auto"))
            elif isinstance(r.mask, Image.Image):
                out.append((mask_to_tensor(r.mask, self.resolution), mask_to_tensor(r.mask, (W, H)), "given"))
            else:
                out.append((*anywhere, "anywhere"))
        return out

    def check_modules(self, names: Collection[str]) -> None:
        """A UserError naming any module the editor does not have."""
        missing = sorted(set(names) - set(self.module_names))
        if missing:
            raise UserError(f"this editor has no module {', '.join(missing)} "
                            f"(it has: {', '.join(self.module_names) or 'none'})")

    @contextmanager
    def modules_off(self, names: Collection[str]) -> Iterator[None]:
        """Edit without the named modules ("pfb", "cam", "ie", "gb") of the editor (`EditGenerator.modules_off`)."""
        self.check_modules(names)
        if not names:
            yield
            return
        with self.diffusion.modules_off(set(names)):
            yield

    @torch.no_grad()
    def edit(self, requests: Iterable[EditRequest], steps: int | None = None, guidance_text: float | None = None,
             guidance_image: float | None = None, seed: int = 0, num_beams: int = 1,
             batch_size: int = 8, modules_off: Collection[str] = (),
             on_step: Callable[[int, int], None] | None = None) -> Iterator[EditResult]:
        """Edit the requests in batches of `batch_size`, yielding each result as its batch finishes. Every photo
        gets the noise (and its mask the noise) of `seed` alone: its edit does not depend on the batch.
        `modules_off`: the editor's modules not to use; `on_step(done, total)` after each DDIM step."""
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        requests = iter(requests)
        while batch := list(islice(requests, batch_size)):
            with self.modules_off(modules_off):  # not held across the yield: the caller may edit in between
                results = self._edit_batch(batch, steps, guidance_text, guidance_image, seed, num_beams, on_step)
            yield from results

    def working_edits(self, requests: list[EditRequest], steps=None, guidance_text=None, guidance_image=None,
                      seed: int = 0, num_beams: int = 1,
                      on_step: Callable[[int, int], None] | None = None) -> WorkingEdits:
        """Steps 1–4 of an edit, at the working resolution: 1. instructions (the expander, if any); 2. the photos
        resized; 3. masks (given, predicted in one U-Net call, or anywhere); 4. DDIM edits with per-photo noise
        (`on_step(done, total)` after each DDIM step)."""
        texts = self.instructions(requests, num_beams)                                              # 1.
        sources = torch.cat([image_to_tensor(r.image, self.resolution) for r in requests]).to(self.device)  # 2.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            masks = self._masks(requests, sources, texts, seed)                                      # 3.
            work = torch.cat([m[0] for m in masks]).to(self.device)
            options = {}
            if self.diffusion is not None:  # x_T from `seed` per photo, as an edit of that photo alone draws it
                options["on_step"] = on_step
                shape = self.diffusion.diffusion_shape(sources[:1])
                options["noise"] = torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(seed))
                                              for _ in requests])
            edits = self.editor.edit({"source": sources, "mask": work, "instruction": texts, "prompt": texts},
                                     steps=steps, seed=seed, guidance_text=guidance_text,
                                     guidance_image=guidance_image, texts=texts, **options)          # 4.
        return WorkingEdits(texts, sources.float().cpu(), work.cpu(), [m[1] for m in masks], [m[2] for m in masks],
                            edits.float().cpu())

    def _edit_batch(self, requests: list[EditRequest], steps, guidance_text, guidance_image, seed: int,
                    num_beams: int, on_step=None) -> list[EditResult]:
        """Steps 1–4 (`working_edits`), then 5. each edit composited onto its photo at the photo's size."""
        w = self.working_edits(requests, steps, guidance_text, guidance_image, seed, num_beams, on_step)
        results = []
        for i, r in enumerate(requests):                                                            # 5.
            W, H = r.image.size
            out = composite(image_to_tensor(r.image, None), w.edits[i:i + 1], w.sources[i:i + 1], w.full_masks[i],
                            *self.seam_sigmas((H, W)))
            edited = tensor_to_image(out[0])
            edited.info.update(photo_metadata(r.image))
            results.append(EditResult(edited, mask_image(w.full_masks[i][0]), w.mask_sources[i], w.texts[i]))
        return results

    def __call__(self, image: Image.Image, prompt: str, mask: Image.Image | str = "auto", steps: int | None = None,
                 guidance_text: float | None = None, guidance_image: float | None = None, seed: int = 0,
                 num_beams: int = 1, instruction: str | None = None, modules_off: Collection[str] = (),
                 on_step: Callable[[int, int], None] | None = None) -> EditResult:
        """Edit one photo (see `edit`)."""
        return next(self.edit([EditRequest(image, prompt, mask, instruction)], steps, guidance_text, guidance_image,
                              seed, num_beams, modules_off=modules_off, on_step=on_step))
