"""What `xmgie edit` is asked to do: photos (paths, folders, globs, or a prompts file), their prompts and masks,
and where each result goes. Everything is checked before the model loads, so a typo costs no model load and no
photo is half-written."""
from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from xmgie.errors import UserError
from xmgie.inference import MASK_MODES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class EditJob:
    """One photo: its path, prompt, mask ("auto", "anywhere" or a mask file), output path and mask output."""

    image: Path
    prompt: str
    mask: str | Path
    out: Path
    mask_out: Path | None = None


def expand_images(items: list[str]) -> list[Path]:
    """Files as given, folders as their image files (sorted), anything else as a glob (sorted)."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir() and not glob.has_magic(item):
            raise UserError(f"image not found: {path}")
        matches = (sorted(path.iterdir()) if path.is_dir() else [Path(p) for p in sorted(glob.glob(item))])
        images = [p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise UserError(f"no image found at {item!r} (a file, a folder of {'/'.join(IMAGE_SUFFIXES)} files or "
                            f"a glob)")
        found += images
    return found


def read_prompts(path: str | Path) -> list[tuple[Path, str]]:
    """A prompts file: one `IMAGE<TAB>PROMPT` per line (IMAGE relative to the file's folder or absolute); blank
    lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompts file not found: {path}")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        image, tab, prompt = line.partition("\t")
        if not tab or not image.strip() or not prompt.strip():
            raise UserError(f"{path}:{number}: expected IMAGE<TAB>PROMPT, got {line[:80]!r}")
        image_path = Path(image.strip())
        pairs.append((image_path if image_path.is_absolute() else path.parent / image_path, prompt.strip()))
    if not pairs:
        raise UserError(f"{path} lists no IMAGE<TAB>PROMPT line")
    return pairs


def check_image(path: Path, what: str = "image") -> None:
    """Open the file's header: a missing or unreadable image is a UserError before any work is done."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UserError(f"cannot read {what} {path}: {err}") from None


def output_names(images: list[Path]) -> list[str]:
    """File stems for the outputs, `<stem>-<index>` where two photos share a stem."""
    counts = Counter(p.stem for p in images)
    return [p.stem if counts[p.stem] == 1 else f"{p.stem}-{i}" for i, p in enumerate(images)]


def mask_for(image: Path, mask: str | None, several: bool) -> str | Path:
    """"auto" (default), "anywhere", one mask file, or a folder holding `<stem>.<image suffix>` per photo."""
    if mask is None or mask in MASK_MODES:
        return mask or "auto"
    path = Path(mask)
    if path.is_dir():
        for suffix in IMAGE_SUFFIXES:
            if (path / f"{image.stem}{suffix}").is_file():
                return path / f"{image.stem}{suffix}"
        raise UserError(f"no mask for {image} in {path} (expected {image.stem}.png or another image suffix)")
    if several and not path.exists():
        raise UserError(f"mask not found: {path}")
    return path


def plan(images: list[str] | None, prompt: str | None, prompts: str | None, mask: str | None, out: str | None,
         save_mask: str | None) -> list[EditJob]:
    """The jobs of one `xmgie edit` call; every input is checked here. One photo: --out and --save-mask are file
    paths (default out: <image>_edited.png); several: folders (default: each result beside its photo)."""
    if (prompt is None) == (prompts is None):
        raise UserError("give either --prompt (one prompt for every image) or --prompts FILE (IMAGE<TAB>PROMPT lines)")
    if prompts is not None:
        if images:
            raise UserError("--prompts lists the images itself: leave out --image")
        pairs = read_prompts(prompts)
    else:
        if not images:
            raise UserError("give --image (files, folders or globs) or --prompts FILE")
        pairs = [(p, prompt) for p in expand_images(images)]
    paths = [p for p, _ in pairs]
    several = len(paths) > 1
    if several and out and Path(out).suffix.lower() in IMAGE_SUFFIXES:
        raise UserError(f"with {len(paths)} images --out is a folder, got the file name {out}")
    names = output_names(paths)
    jobs = []
    for (path, text), name in zip(pairs, names):
        check_image(path)
        job_mask = mask_for(path, mask, several)
        if isinstance(job_mask, Path):
            check_image(job_mask, "mask")
        if several:
            target = Path(out) / f"{name}.png" if out else path.with_name(f"{name}_edited.png")
            mask_target = Path(save_mask) / f"{name}.png" if save_mask else None
        else:
            target = Path(out) if out else path.with_name(f"{path.stem}_edited.png")
            mask_target = Path(save_mask) if save_mask else None
        jobs.append(EditJob(path, text, job_mask, target, mask_target))
    return jobs
