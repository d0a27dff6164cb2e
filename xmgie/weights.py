"""The pretrained files the project can use, where they live, and their checks (docs/evaluation.md).

Every file sits in one folder, `$XMGIE_WEIGHTS` (default `~/.cache/xmgie/weights`), under the name in the
registry. Before a file is used its sha256 is computed and compared with the registry's pin:

    full      the whole sha256 is pinned (the publisher's URL carries it)
    prefix    the first hex digits are pinned (the torch.hub file-name convention: `name-<sha256[:8]>.pth`)
    none      no published hash: the file's sha256 is computed and recorded with every result, not checked

A file whose hash disagrees with its pin is refused with an error that names the file, the URL and the
`xmgie weights fetch` command. Every result records the full sha256 of the file actually used.
"""
from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from xmgie.downloads import download, file_digest
from xmgie.errors import UserError

ENV = "XMGIE_WEIGHTS"


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file (or diffusers folder) and what it is for."""

    name: str
    filename: str           # file (or folder) name inside the weights folder
    url: str                # where `xmgie weights fetch` downloads it from
    sha256: str | None      # full hex digest, a prefix of it, or None when nothing is published
    used_by: str            # which metric or model loads it
    folder: bool = False    # a diffusers folder (checked by its model_index.json, not hashed)

    @property
    def pin(self) -> str:
        if self.folder or self.sha256 is None:
            return "none"
        return "full" if len(self.sha256) == 64 else "prefix"


REGISTRY: dict[str, WeightSpec] = {s.name: s for s in (
    WeightSpec("inception", "weights-inception-2015-12-05-6726825d.pth",
               "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth", "6726825d", "IS, FID (torch-fidelity Inception-v3)"),
    WeightSpec("alexnet", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
               "7be5be79", "LPIPS (AlexNet backbone; the linear heads ship with the lpips package)"),
    WeightSpec("vggface2", "20180402-114759-vggface2.pt",
               "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
               None, "IPS and the IE module on faces (facenet-pytorch InceptionResnetV1)"),
    WeightSpec("clip", "ViT-B-32.pt",
               "https://openaipublic.azureedge.net/clip/models/"
               "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
               "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
               "CLIP ViT-B-32 (open_clip 'ViT-B-32-quickgelu'): text encoder at full scale"),
    WeightSpec("ip2p", "instruct-pix2pix", "https://huggingface.co/timbrooks/instruct-pix2pix", None,
               "the full-scale generator (a diffusers folder: unet, vae, text_encoder, tokenizer)", folder=True),
)}


def weights_dir() -> Path:
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "xmgie" / "weights").expanduser()


def spec(name: str) -> WeightSpec:
    if name not in REGISTRY:
        raise UserError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def path_of(name: str) -> Path:
    return weights_dir() / spec(name).filename


_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: each file is hashed once


def sha256_of(path: str | Path) -> str:
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_digest(path, "sha256")
    return _HASHES[key]


def _refetch(s: WeightSpec) -> str:
    return f"delete it and run `xmgie weights fetch {s.name}` (or download {s.url} into {weights_dir()})"


def check(name: str) -> tuple[Path, str | None]:
    """The verified path of `name` and its sha256 (None for a folder). Missing or mismatched: UserError."""
    s, path = spec(name), path_of(name)
    if s.folder:
        if not (path / "model_index.json").is_file():
            raise UserError(f"{name}: no diffusers folder at {path} (model_index.json missing); {_refetch(s)}")
        return path, None
    if not path.is_file():
        raise UserError(f"{name}: weights file {path} not found; run `xmgie weights fetch {name}` on a networked "
                        f"machine or download {s.url} into {weights_dir()}")
    digest = sha256_of(path)
    if s.sha256 is not None and not digest.startswith(s.sha256):
        raise UserError(f"{name}: {path} has sha256 {digest}, expected {s.sha256}{'…' if s.pin == 'prefix' else ''}; "
                        f"{_refetch(s)}")
    return path, digest


def locate(name: str) -> tuple[Path, str | None] | None:
    """Like `check`, but a missing file is None (the caller falls back to an uncalibrated backbone).
    A present file with a wrong hash is still an error: it is never silently replaced."""
    s, path = spec(name), path_of(name)
    if not (path / "model_index.json" if s.folder else path).exists():
        return None
    return check(name)


def status() -> list[dict[str, str]]:
    """One row per registry entry: name, state (present | missing | mismatch), pin, sha256, path, used_by."""
    rows = []
    for s in REGISTRY.values():
        row = {"name": s.name, "pin": s.pin, "path": str(path_of(s.name)), "used_by": s.used_by, "sha256": ""}
        try:
            found = locate(s.name)
            row["state"] = "missing" if found is None else "present"
            if found is not None:
                row["sha256"] = found[1] or ""
        except UserError as err:
            row["state"], row["error"] = "mismatch", str(err)
        rows.append(row)
    return rows


def fetch(name: str, opener=urllib.request.urlopen) -> Path:
    """Download one file into the weights folder (resumable, renamed into place only when whole), then check
    its hash (a mismatch deletes it). Folders (ip2p) are diffusers repositories: they are fetched with `huggingface-cli download`."""
    s = spec(name)
    if s.folder:
        raise UserError(f"{name} is a folder: run `huggingface-cli download {s.url.split('huggingface.co/')[-1]} "
                        f"--local-dir {path_of(name)}`")
    dest = path_of(name)
    try:
        download(s.url, dest, opener=opener)
    except UserError as err:
        raise UserError(f"{name}: {err}; or copy the file to {dest} by hand") from None
    try:
        check(name)
    except UserError:
        dest.unlink()
        raise
    return dest
