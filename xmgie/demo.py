"""`xmgie demo` (`make demo`): a local web page that edits photos with a trained editor. Upload a photo (or take
an example), paint where it may change or let the editor predict the mask, read and change the expressive
instruction, edit, compare before and after, download the edit and the settings that reproduce it.

Every edit is `EditPipeline`'s, the code `xmgie edit` runs; the settings file carries the `xmgie edit` command
that gives the same pixels. One edit at a time (a queue); bad input is a message in the page, never a traceback.
The page is served on 127.0.0.1 unless told otherwise, with no public link unless `--share` asks for one.
"""
from __future__ import annotations

import json
import os
import random
import shlex
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from xmgie.errors import UserError
from xmgie.inference import EditPipeline, EditRequest
from xmgie.modules.mask_predictor import MaskPredictorConfig
from xmgie.training.config import SamplingConfig

MAX_SIDE = 4096              # larger photos are refused: the compositing runs at the photo's own size
EXAMPLES_DIR = Path(__file__).resolve().parent / "demo_examples"  # `shapes` test photos and their prompts
MASK_MODES = {"painted": "the painted strokes", "auto": "predicted by the editor", "anywhere": "the whole photo"}


@dataclass
class DemoSettings:
    """What the page's controls hold for one edit; `command` is the `xmgie edit` line that repeats it."""

    prompt: str
    instruction: str = ""        # empty: the prompt's expansion (or the prompt itself without an expander)
    mask: str = "painted"        # a key of MASK_MODES
    seed: int = 0
    steps: int | None = None     # None: the checkpoint's
    guidance_text: float | None = None
    guidance_image: float | None = None
    modules_off: list[str] = field(default_factory=list)

    def command(self, ckpt: str, expander: str | None, image: str = "photo.png", mask_file: str = "mask.png",
                mask_net: str | None = None) -> str:
        args = ["xmgie", "edit", "--ckpt", ckpt, "--image", image, "--prompt", self.prompt,
                "--mask", mask_file if self.mask == "painted" else self.mask, "--seed", str(self.seed)]
        if self.mask == "auto" and mask_net:
            args += ["--mask-net", mask_net]
        if self.instruction:
            args += ["--instruction", self.instruction]
        elif expander:
            args += ["--expander", expander]
        for flag, value in (("--steps", self.steps), ("--guidance-text", self.guidance_text),
                            ("--guidance-image", self.guidance_image)):
            if value is not None:
                args += [flag, str(value)]
        if self.modules_off:
            args += ["--modules-off", ",".join(self.modules_off)]
        return shlex.join(args)


@dataclass
class DemoResult:
    """The edit at the photo's size, the mask it used ('L'), that mask over the photo, the instruction read, and
    the files offered for download (edit.png, mask.png, settings.json and photo.png, the files its command reads)."""

    image: Image.Image
    mask: Image.Image
    overlay: Image.Image
    instruction: str
    mask_source: str
    files: list[str]
    settings: dict[str, Any]


def check_photo(image: Image.Image | None) -> Image.Image:
    """The photo as RGB; a missing, empty or oversized one is a UserError."""
    if image is None:
        raise UserError("upload a photo (or pick an example) first")
    W, H = image.size
    if min(W, H) < 8 or max(W, H) > MAX_SIDE:
        raise UserError(f"the photo is {W}×{H} px: give one between 8 and {MAX_SIDE} px a side")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as err:
        raise UserError(f"cannot read this photo as RGB (mode {image.mode}): {err}") from None


def painted_mask(layers: list[Image.Image | None], size: tuple[int, int]) -> Image.Image | None:
    """The union of the brush layers' strokes (any opaque pixel) as an 'L' mask of `size` (255 = may change);
    None when nothing is painted."""
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for layer in layers:
        if layer is None:
            continue
        layer = layer.convert("RGBA").resize(size, Image.NEAREST)
        mask |= np.asarray(layer)[..., 3] > 0
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L") if mask.any() else None


def overlay(image: Image.Image, mask: Image.Image, tint=(255, 64, 64), strength: float = 0.5) -> Image.Image:
    """`image` with the mask's region tinted."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    m = (np.asarray(mask.resize(image.size)) > 127)[..., None] * strength
    return Image.fromarray((rgb * (1 - m) + np.array(tint, np.float32) * m).round().astype(np.uint8))


class DemoEditor:
    """The page's logic without the page: a pipeline, the checkpoint (and expander) it came from, and where the
    downloads are written."""

    def __init__(self, pipe: EditPipeline, ckpt: str, expander: str | None = None, out_dir: str | Path | None = None):
        self.pipe, self.ckpt, self.expander = pipe, ckpt, expander
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="xmgie-demo-"))

    @property
    def modules(self) -> list[str]:
        return self.pipe.module_names

    def expand(self, image: Image.Image | None, prompt: str) -> str:
        """The instruction the editor would read for `prompt` on the photo (the prompt without an expander)."""
        if not prompt.strip():
            raise UserError("write what to change first")
        return self.pipe.instruction(check_photo(image), prompt.strip())

    def predict_mask(self, image: Image.Image | None, prompt: str, instruction: str = "", seed: int = 0
                     ) -> tuple[Image.Image, str]:
        """The mask `auto` would use for this photo and instruction, and where it came from."""
        photo = check_photo(image)
        if not prompt.strip():
            raise UserError("write what to change first")
        request = EditRequest(photo, prompt.strip(), "auto", instruction.strip() or None)
        return self.pipe.mask_of(request, seed)

    def edit(self, image: Image.Image | None, layers: list[Image.Image | None], settings: DemoSettings,
             on_step: Callable[[int, int], None] | None = None) -> DemoResult:
        """1. check the photo, the prompt and the mask; 2. edit with `EditPipeline` (xmgie edit's code);
        3. write edit.png, mask.png and settings.json (with the command that repeats the edit)."""
        photo = check_photo(image)                                                             # 1.
        if not settings.prompt.strip():
            raise UserError("write what to change first")
        if settings.mask not in MASK_MODES:
            raise UserError(f"mask must be one of {', '.join(MASK_MODES)}, got {settings.mask!r}")
        if settings.steps is not None and not 1 <= settings.steps <= 1000:
            raise UserError(f"DDIM steps must be between 1 and 1000, got {settings.steps}")
        mask: Image.Image | str = settings.mask
        if settings.mask == "painted":
            mask = painted_mask(layers, photo.size)
            if mask is None:
                raise UserError("paint where the photo may change, or choose the predicted mask or 'anywhere'")
        result = self.pipe(photo, settings.prompt.strip(), mask, settings.steps, settings.guidance_text,   # 2.
                           settings.guidance_image, settings.seed, instruction=settings.instruction.strip() or None,
                           modules_off=settings.modules_off, on_step=on_step)
        folder = Path(tempfile.mkdtemp(prefix="edit-", dir=self.out_dir))                     # 3.
        photo.save(folder / "photo.png")
        result.image.save(folder / "edit.png")
        result.mask.save(folder / "mask.png")
        record = {**asdict(settings), "instruction_read": result.instruction, "mask_source": result.mask_source,
                  "checkpoint": self.ckpt, "expander": self.expander,
                  "command": settings.command(self.ckpt, self.expander, "photo.png", "mask.png",
                                              self.pipe.mask_predictor.cfg.net)}
        (folder / "settings.json").write_text(json.dumps(record, indent=2) + "\n")
        files = [str(folder / name) for name in ("edit.png", "mask.png", "settings.json", "photo.png")]
        return DemoResult(result.image, result.mask, overlay(photo, result.mask), result.instruction,
                          result.mask_source, files, record)


def examples() -> list[list[str]]:
    """[[photo path, prompt], …] of the bundled examples."""
    listed = json.loads((EXAMPLES_DIR / "examples.json").read_text())
    return [[str(EXAMPLES_DIR / e["image"]), e["prompt"]] for e in listed]


def _number(value, kind=float):
    """A page field: empty means "the checkpoint's default"."""
    return None if value in (None, "") else kind(value)


def build_app(demo: DemoEditor):
    """The Gradio page over `demo`. Endpoints (also for gradio_client): /edit, /expand, /predict_mask."""
    import gradio as gr

    def guarded(fn):
        def run(*args):
            try:
                return fn(*args)
            except (UserError, ValueError, OSError) as err:  # a message in the page; the server keeps serving
                raise gr.Error(str(err).splitlines()[0] if str(err) else type(err).__name__, print_exception=False)
        run.__name__ = fn.__name__
        return run

    def layers_of(value: dict | None) -> tuple[Image.Image | None, list]:
        value = value or {}
        return value.get("background"), list(value.get("layers") or [])

    def on_edit(value, prompt, instruction, mask_mode, seed, randomize, steps, s_t, s_i, modules,
                progress=gr.Progress()):
        image, layers = layers_of(value)
        seed = random.randrange(2**31) if randomize else int(seed or 0)
        off = [m for m in demo.modules if m not in (modules or [])]
        settings = DemoSettings(prompt or "", instruction or "", mask_mode, seed, _number(steps, int),
                                _number(s_t), _number(s_i), off)
        progress(0, desc="editing")
        r = demo.edit(image, layers, settings, on_step=lambda done, total: progress((done, total), unit="DDIM steps"))
        source = check_photo(image)
        status = f"instruction read: “{r.instruction}” · mask: {r.mask_source} · seed {seed}"
        return r.image, r.overlay, (source, r.image), r.files, r.instruction, seed, status

    def on_expand(value, prompt):
        return demo.expand(layers_of(value)[0], prompt or "")

    def on_predict(value, prompt, instruction, seed):
        image, _ = layers_of(value)
        mask, source = demo.predict_mask(image, prompt or "", instruction or "", int(seed or 0))
        return overlay(check_photo(image), mask), f"predicted mask: {source}"

    with gr.Blocks(title="xMGIE") as app:
        gr.Markdown(f"## xMGIE — instruction-guided editing\nCheckpoint `{demo.ckpt}`" +
                    (f" · expander `{demo.expander}`" if demo.expander
                     else " · no instruction expander: the prompt is the instruction"))
        with gr.Row():
            with gr.Column():
                photo = gr.ImageMask(label="Photo (paint where it may change)", type="pil", format="png",
                                     sources=("upload", "clipboard"), layers=False, elem_id="photo")
                prompt = gr.Textbox(label="What to change", placeholder="make the circle red", elem_id="prompt")
                with gr.Row():
                    instruction = gr.Textbox(label="Expressive instruction (editable; empty: expand the prompt)",
                                             elem_id="instruction", scale=4)
                    expand = gr.Button("Expand", scale=1)
                mask_mode = gr.Radio(list(MASK_MODES), value="painted", label="Mask",
                                     info=" · ".join(f"{k}: {v}" for k, v in MASK_MODES.items()))
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    randomize = gr.Checkbox(value=False, label="Random seed")
                with gr.Accordion("Sampling and modules", open=False):
                    # a one-pass editor (GAN baseline) has no steps or scales: the defaults show, unused
                    cfg = demo.pipe.editor.sampling_cfg or SamplingConfig()
                    steps = gr.Number(value=cfg.steps, precision=0, label="DDIM steps")
                    s_t = gr.Number(value=cfg.guidance_text, label="Text guidance s_T")
                    s_i = gr.Number(value=cfg.guidance_image, label="Image guidance s_I")
                    modules = gr.CheckboxGroup(demo.modules, value=demo.modules, label="Modules applied",
                                               visible=bool(demo.modules))
                with gr.Row():
                    predict = gr.Button("Predict the mask")
                    run = gr.Button("Edit", variant="primary", elem_id="edit-button")
                gr.Examples(examples(), inputs=[photo, prompt], label="Examples (shapes)")
            with gr.Column():
                edited = gr.Image(label="Edit", type="pil", format="png", elem_id="edit")
                shown_mask = gr.Image(label="Mask over the photo", type="pil", format="png")
                compare = gr.ImageSlider(label="Before / after", type="pil", format="png")
                status = gr.Markdown(elem_id="status")
                files = gr.File(label="Downloads: the edit, its mask, its settings (with the xmgie edit command that "
                                "repeats it on photo.png and mask.png), the photo",
                                file_count="multiple")
        run.click(guarded(on_edit), [photo, prompt, instruction, mask_mode, seed, randomize, steps, s_t, s_i, modules],
                  [edited, shown_mask, compare, files, instruction, seed, status], api_name="edit")
        expand.click(guarded(on_expand), [photo, prompt], instruction, api_name="expand")
        predict.click(guarded(on_predict), [photo, prompt, instruction, seed], [shown_mask, status],
                      api_name="predict_mask")
    return app.queue(default_concurrency_limit=1)  # one edit at a time: a CPU runs one well


def launch(ckpt: str, expander: str | None = None, device: str | None = None, host: str = "127.0.0.1",
           port: int | None = None, share: bool = False, block: bool = True, masks: MaskPredictorConfig | None = None):
    """Load the editor once and serve the page; returns the app (and does not block with `block=False`). `masks`:
    the settings of the page's automatic masks (a learned predictor's file among them)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local demo
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the demo needs Gradio: pip install -e '.[demo]' (make demo installs it)") from None
    from xmgie.inference import default_device

    pipe = EditPipeline.from_checkpoint(ckpt, device=device or default_device(), expander=expander, masks=masks)
    app = build_app(DemoEditor(pipe, ckpt, expander))
    app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block, quiet=not block)
    return app
