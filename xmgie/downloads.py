"""Resumable, verified downloads: a file arrives whole and checked, or not under its name at all.

    url ─ bytes appended to <dest>.part (continued with an HTTP Range request after an interruption)
        ─ complete: checksum compared (md5 or sha256, as the publisher gives it) ─ renamed to <dest>
"""
from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from xmgie.errors import UserError

CHUNK = 1 << 20


def file_digest(path: str | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_checksum(path: Path, checksum: str | None, name: str | None = None) -> None:
    """`checksum` "md5:<hex>" or "sha256:<hex>" (None: nothing published, nothing checked); a mismatch is a
    UserError naming the file (`name`, default the path's) and both digests."""
    if checksum is None:
        return
    algorithm, _, expected = checksum.partition(":")
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise UserError(f"{name or path.name}: {algorithm} {actual}, expected {expected}: the file is corrupt or not the "
                        f"published one")


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def download(url: str, dest: Path, checksum: str | None = None,
             opener: Callable[..., http.client.HTTPResponse] = urllib.request.urlopen,
             timeout: float = 60.0) -> Path:
    """Download `url` to `dest` and return it.

    1. Bytes go to `<dest>.part`; a part left by an interrupted call is continued from its size (Range request;
       a server that ignores the range sends the whole file and the part restarts).
    2. An interruption keeps the part and is a UserError saying so (run again to resume); a host that cannot be
       reached is a UserError too.
    3. Complete: the checksum is compared; a mismatch deletes the part (the next call starts over).
    4. The part is renamed to `dest`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_of(dest)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:  # 1.
        with opener(request, timeout=timeout) as response:
            resumed = have > 0 and getattr(response, "status", None) == 206
            expected = getattr(response, "length", None)  # bytes still to come (None: not announced; file://)
            with open(part, "ab" if resumed else "wb") as f:
                got = 0
                for block in iter(lambda: response.read(CHUNK), b""):
                    f.write(block)
                    got += len(block)
            if expected is not None and got < expected:
                raise http.client.IncompleteRead(b"", expected - got)
    except urllib.error.HTTPError as err:
        if not (err.code == 416 and have):  # 416 after a part: the part is already whole
            raise UserError(f"could not download {url}: HTTP {err.code} {err.reason}") from None
    except (http.client.IncompleteRead, ConnectionError, TimeoutError) as err:  # 2.
        size = part.stat().st_size if part.exists() else 0
        raise UserError(f"download of {url} interrupted after {size:,} bytes ({type(err).__name__}); run the same "
                        f"command again to resume") from None
    except (urllib.error.URLError, OSError) as err:
        raise UserError(f"could not download {url}: {getattr(err, 'reason', err)}") from None
    try:  # 3.
        check_checksum(part, checksum, dest.name)
    except UserError:
        part.unlink()
        raise
    part.replace(dest)  # 4.
    return dest
