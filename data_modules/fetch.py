"""`xmgie data fetch` and `xmgie data verify`: a dataset's official files, downloaded, checked and unpacked into
the layout its loader reads (data_modules/sources.py says where each comes from)."""
from __future__ import annotations

import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from data_modules.registry import build_datamodule
from data_modules.sources import SOURCES, Part, Source
from xmgie.downloads import check_checksum, download, part_of
from xmgie.errors import UserError

DOWNLOADS = ".downloads"  # under the root: archives while they arrive (and, with keep, after)


def source(dataset: str) -> Source:
    if dataset not in SOURCES:
        raise UserError(f"no download source for {dataset!r}; known: {', '.join(sorted(SOURCES))}")
    return SOURCES[dataset]


def unpack(archive: Path, root: Path) -> list[str]:
    """Unpack a tar (any compression) or zip archive into `root`, all or nothing: it is unpacked into a staging
    folder beside the root first (a member leaving it is refused), then each top-level entry is moved in.
    Returns the top-level names. A damaged archive is a UserError and leaves nothing."""
    staging = root / DOWNLOADS / f"{archive.name}.unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if not (staging / name).resolve().is_relative_to(staging.resolve()):
                        raise UserError(f"{archive.name}: member {name!r} would land outside {root}")
                z.extractall(staging)
        else:
            with tarfile.open(archive) as t:
                t.extractall(staging, filter="data")  # refuses absolute paths, '..' and links leaving it
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"{archive.name} cannot be unpacked ({type(err).__name__}: {err}): the file is damaged; "
                        f"it was removed, fetch again") from None
    names = sorted(p.name for p in staging.iterdir())
    for name in names:
        target = root / name
        if target.is_dir() and (staging / name).is_dir():  # merge into a folder another part already made
            shutil.copytree(staging / name, target, dirs_exist_ok=True)
        else:
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            shutil.move(staging / name, target)
    shutil.rmtree(staging, ignore_errors=True)
    return names


def found(part: Part, root: Path) -> Path | None:
    """Where the part lies under `root` (its path, else one of its alternatives), or None."""
    return next((root / p for p in (part.gives, *part.alternatives) if (root / p).exists()), None)


def present(part: Part, root: Path) -> bool:
    return found(part, root) is not None


def fetch(dataset: str, root: Path, extras: bool = False, mirror: str | None = None, keep: bool = False,
          log: Callable[[str], None] = print) -> list[str]:
    """Fetch the dataset's parts that are not in `root` yet (its extras too with `extras`); `mirror`: a base URL
    serving the same file names. Returns the manual steps still needed (empty: complete).

    Per part: 1. skipped when present; 2. downloaded into <root>/.downloads (resumable) and checked;
    3. unpacked into the root (an archive) or moved there (a file); 4. the archive deleted unless `keep`.
    """
    src = source(dataset)
    root.mkdir(parents=True, exist_ok=True)
    wanted = [p for p in src.parts if p.required or extras]
    manual = [p for p in wanted if p.url is None and not present(p, root)]
    try:
        for part in wanted:
            if present(part, root):  # 1.
                log(f"present  {part.file} ({part.gives})")
            elif part.url is not None:
                log(f"fetching {part.file} ({part.size or 'size unknown'})")
                fetch_part(part, root, mirror, keep)
                log(f"ready    {part.file} -> {root / part.gives}")
    finally:
        downloads = root / DOWNLOADS
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
    if not manual:
        return []
    what = ", ".join(f"{p.file} ({p.what})" for p in manual)
    return [f"{dataset}: {what} cannot be fetched by a script. {src.manual.format(root=root)}"]


def fetch_part(part: Part, root: Path, mirror: str | None = None, keep: bool = False) -> None:
    """Steps 2.–4. of `fetch` for one part with a URL."""
    url = f"{mirror.rstrip('/')}/{part.file}" if mirror else part.url
    archive = download(url, root / DOWNLOADS / part.file, part.checksum)  # 2.
    if not part.unpack:  # 3.
        shutil.move(archive, root / part.gives)
        return
    try:
        unpack(archive, root)
    finally:
        if not keep or not present(part, root):
            archive.unlink(missing_ok=True)  # 4. (a damaged or unexpected archive always goes)
    if not present(part, root):
        raise UserError(f"{part.file} unpacked, but {root / part.gives} is not there: not the expected archive")


def loader_report(dataset: str, root: Path) -> str:
    """What the dataset's loader reads from `root`: records per split and the fallbacks in use. A tree it refuses
    is a UserError with its one-line reason."""
    try:
        dm = build_datamodule(dataset, root=str(root), cache=False)
        counts = {split: len(records) for split, records in dm.records().items()}
    except (UserError, FileNotFoundError, KeyError, ValueError) as err:
        raise UserError(f"{dataset} at {root} does not load: {str(err).splitlines()[0]}") from None
    notes = "; ".join(f"{k}: {v}" for k, v in dm.notes.items())
    counted = ", ".join(f"{n:,} {split}" for split, n in counts.items())
    return f"{dataset}: {counted}" + (f" ({notes})" if notes else "")


@dataclass
class PartState:
    part: Part
    state: str        # present | missing | partial | corrupt
    detail: str = ""


def verify(dataset: str, root: Path) -> list[PartState]:
    """Each part's state under `root`: present, missing, partial (an interrupted download `fetch` resumes) or
    corrupt (a file kept as published whose checksum differs)."""
    states = []
    for part in source(dataset).parts:
        if present(part, root):
            state, detail = "present", str(found(part, root))
            if not part.unpack and part.checksum:
                try:
                    check_checksum(root / part.gives, part.checksum)
                except UserError as err:
                    state, detail = "corrupt", str(err)
        elif part_of(root / DOWNLOADS / part.file).exists():
            size = part_of(root / DOWNLOADS / part.file).stat().st_size
            state, detail = "partial", f"{size:,} bytes downloaded; `xmgie data fetch` resumes"
        else:
            state, detail = "missing", part.what
        states.append(PartState(part, state, detail))
    return states
