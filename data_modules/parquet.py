"""MagicBrush as the Hugging Face hub distributes it: parquet shards (`data/{train,dev}-NNNNN-of-NNNNN.parquet`),
one row per turn with the columns img_id, turn_index, source_img, mask_img, instruction, target_img, each image a
struct {bytes, path} (the `datasets` Image feature).

The loader reads images from files, so the shards are unpacked once into MagicBrush's JSON layout (images/<id>/…,
edit_sessions.json) in a folder beside them, and again only when a shard changes. The image bytes are written as
they are stored (no re-encoding).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from xmgie.errors import UserError

COLUMNS = ("img_id", "turn_index", "source_img", "mask_img", "instruction", "target_img")
ROLES = {"source_img": "input", "target_img": "output", "mask_img": "mask"}


def shards(root: Path) -> list[Path]:
    """The parquet files under `root` (any depth), in name order; the unpacked folder's own files excluded."""
    return sorted(p for p in root.rglob("*.parquet") if ".unpacked" not in p.parts)


def signature(files: list[Path]) -> str:
    """Changes whenever a shard is added, removed or rewritten."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def image_suffix(data: bytes) -> str:
    return ".png" if data.startswith(b"\x89PNG") else ".jpg" if data.startswith(b"\xff\xd8") else ".img"


def unpack_magicbrush(files: list[Path], out: Path) -> Path:
    """Unpack `files` into `out` (MagicBrush's JSON layout) unless `out` already holds this exact set of shards.

    1. read each shard batch by batch (memory stays one batch); 2. write each turn's images as stored, named
    <id>-{input,output,mask}<turn>; 3. edit_sessions.json, turns in order; 4. written into a staging folder and
    renamed, so an interrupted unpacking is never read as a complete one.
    """
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("reading MagicBrush's parquet shards needs pyarrow: pip install -e '.[parquet]'") from None
    sig = signature(files)
    if (out / "signature").is_file() and (out / "signature").read_text() == sig:
        return out
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    sessions: dict[str, list[tuple[int, dict]]] = {}
    for shard in files:  # 1.
        try:
            table = pq.ParquetFile(shard)
            missing = [c for c in COLUMNS if c not in table.schema_arrow.names]
            if missing:
                raise UserError(f"{shard} is not a MagicBrush shard: no column {', '.join(missing)}")
            batches = table.iter_batches(batch_size=64, columns=list(COLUMNS))
            for row in (r for batch in batches for r in batch.to_pylist()):
                sid, turn = str(row["img_id"]), int(row["turn_index"])
                folder = staging / "images" / sid
                folder.mkdir(parents=True, exist_ok=True)
                names = {}
                for column, role in ROLES.items():  # 2.
                    data = (row[column] or {}).get("bytes")
                    if data:
                        names[role] = f"{sid}-{role}{turn}{image_suffix(data)}"
                        (folder / names[role]).write_bytes(data)
                sessions.setdefault(sid, []).append((turn, {**names, "instruction": row["instruction"]}))
        except (OSError, ValueError) as err:  # pyarrow's errors derive from these
            shutil.rmtree(staging, ignore_errors=True)
            raise UserError(f"cannot read {shard}: {type(err).__name__}: {str(err).splitlines()[0]}") from None
    staging.mkdir(parents=True, exist_ok=True)
    ordered = {sid: [turn for _, turn in sorted(turns, key=lambda t: t[0])] for sid, turns in sorted(sessions.items())}
    (staging / "edit_sessions.json").write_text(json.dumps(ordered))  # 3.
    (staging / "signature").write_text(sig)
    shutil.rmtree(out, ignore_errors=True)  # 4.
    os.replace(staging, out)
    return out
