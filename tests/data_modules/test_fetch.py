"""`xmgie data fetch` / `verify` against a local HTTP server serving small archives in each official layout."""
import hashlib
import io
import shutil
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data_modules import sources
from data_modules.registry import build_datamodule
from data_modules.fetch import DOWNLOADS, fetch, unpack, verify
from data_modules.fixtures import write_fixture
from xmgie.cli import main
from xmgie.errors import UserError


class Server:
    """Serves `files` (name -> bytes) with Range support; `cut[name] = n` ends the next response after n bytes."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                server.ranges.append(self.headers.get("Range"))
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if name in server.cut:
                    body = body[:server.cut.pop(name)]
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def tgz(tree: Path, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name in names:
            t.add(tree / name, arcname=name)
    return buf.getvalue()


def zipped(tree: Path, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in names:
            for path in sorted([tree / name, *(tree / name).rglob("*")]):
                z.write(path, path.relative_to(tree).as_posix())
    return buf.getvalue()


def official_files(dataset: str, tree: Path) -> dict[str, bytes]:
    """The files the publisher serves, made from a fixture tree in the unpacked layout: name -> bytes."""
    if dataset == "cub":
        return {"CUB_200_2011.tgz": tgz(tree, ["CUB_200_2011", "attributes.txt"]),
                "segmentations.tgz": tgz(tree, ["segmentations"])}
    if dataset == "flowers":
        return {"102flowers.tgz": tgz(tree, ["jpg"]), "102segmentations.tgz": tgz(tree, ["segmim"]),
                "imagelabels.mat": (tree / "imagelabels.mat").read_bytes(),
                "setid.mat": (tree / "setid.mat").read_bytes()}
    return {"annotations_trainval2017.zip": zipped(tree, ["annotations"]), "val2017.zip": zipped(tree, ["val2017"]),
            "train2017.zip": zipped(tree, ["train2017"])}


@pytest.fixture
def published(server, tmp_path, monkeypatch):
    """Serve `dataset`'s official files made from its fixture, with the registry's checksums set to theirs."""
    def publish(dataset: str) -> dict[str, bytes]:
        files = official_files(dataset, write_fixture(dataset, tmp_path / "made" / dataset, n_images=16))
        server.files.update(files)
        src = sources.SOURCES[dataset]
        parts = tuple(replace(p, checksum=f"md5:{hashlib.md5(files[p.file]).hexdigest()}") if p.file in files
                      else p for p in src.parts)
        monkeypatch.setitem(sources.SOURCES, dataset, replace(src, parts=parts))
        return files
    return publish


@pytest.mark.parametrize("dataset", ["cub", "flowers", "coco"])
def test_fetch_unpacks_the_official_archives_into_the_layout_the_loader_reads(dataset, published, server, tmp_path,
                                                                            capsys):
    published(dataset)
    root = tmp_path / "data" / dataset
    main(["data", "fetch", "--dataset", dataset, "--root", str(root), "--mirror", server.url])
    assert capsys.readouterr().out.strip() == str(root)
    assert not (root / DOWNLOADS).exists()  # the archives are gone once unpacked
    states = {s.part.file: s.state for s in verify(dataset, root)}
    assert all(states[p.file] == "present" for p in sources.SOURCES[dataset].parts if p.required)
    dm = build_datamodule(dataset, root=str(root), cache=False)
    assert sum(map(len, dm.records().values())) == 16
    if dataset in ("cub", "flowers"):  # the image archive alone: templated captions, the documented split
        assert set(dm.notes) == {"split", "captions"}
    main(["data", "verify", "--dataset", dataset, "--root", str(root)])
    assert "loads" in capsys.readouterr().out
    # a second fetch finds everything present and downloads nothing
    served = len(server.ranges)
    main(["data", "fetch", "--dataset", dataset, "--root", str(root), "--mirror", server.url])
    assert len(server.ranges) == served


def test_cub_fetched_from_its_image_archive_alone_trains(published, server, tmp_path):
    """The caption archive cannot be fetched by a script: fetch says how to get it (exit 2) after putting the
    image archive in place, and `make train`'s recipe then trains on the tree (the fallback split)."""
    from tests.conftest import fit

    published("cub")
    root = tmp_path / "cub"
    with pytest.raises(SystemExit) as exit_:
        main(["data", "fetch", "--dataset", "cub", "--root", str(root), "--mirror", server.url, "--extras"])
    assert exit_.value.code == 2
    assert (root / "CUB_200_2011" / "images.txt").exists() and (root / "segmentations").is_dir()
    run = fit(tmp_path / "run", "--data", "experiments/data/cub.yaml", f"--data.init_args.root={root}",
              "--data.init_args.resolution=16", "--data.init_args.batch_size=4", "--data.init_args.num_workers=0")
    assert (run / "checkpoints" / "last.ckpt").exists()


def test_a_corrupted_archive_is_refused_and_leaves_nothing(published, server, tmp_path, capsys):
    files = published("cub")
    server.files["CUB_200_2011.tgz"] = files["CUB_200_2011.tgz"][:-100] + b"x" * 100
    root = tmp_path / "cub"
    with pytest.raises(SystemExit) as exit_:
        main(["data", "fetch", "--dataset", "cub", "--root", str(root), "--mirror", server.url])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "CUB_200_2011.tgz: md5" in err and "corrupt" in err
    assert list(root.iterdir()) == []  # no archive, no part, nothing unpacked


def test_a_damaged_archive_without_a_published_checksum_fails_to_unpack_and_leaves_nothing(tmp_path):
    (tmp_path / "x.tgz").write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UserError, match="damaged"):
        unpack(tmp_path / "x.tgz", root)
    assert [p.name for p in root.rglob("*")] == [DOWNLOADS]  # the empty staging parent only


def test_an_archive_member_leaving_the_root_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "x")
    (tmp_path / "evil.zip").write_bytes(buf.getvalue())
    (tmp_path / "root").mkdir()
    with pytest.raises(UserError, match="outside"):
        unpack(tmp_path / "evil.zip", tmp_path / "root")
    assert not (tmp_path / "evil.txt").exists()


def test_an_interrupted_download_resumes_where_it_stopped(published, server, tmp_path):
    files = published("flowers")
    size = len(files["102flowers.tgz"])
    server.cut["102flowers.tgz"] = size // 3
    root = tmp_path / "flowers"
    with pytest.raises(UserError, match="interrupted after .* run the same command again to resume"):
        fetch("flowers", root, mirror=server.url, log=lambda line: None)
    part = root / DOWNLOADS / "102flowers.tgz.part"
    assert part.stat().st_size == size // 3
    assert {s.part.file: s.state for s in verify("flowers", root)}["102flowers.tgz"] == "partial"
    assert fetch("flowers", root, mirror=server.url, log=lambda line: None) == []
    assert server.ranges[-3] == f"bytes={size // 3}-"  # the archive was continued, then the two .mat files
    assert (root / "jpg").is_dir() and not (root / DOWNLOADS).exists()


def test_an_unreachable_host_is_one_line_and_exit_2(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit) as exit_:
        main(["data", "fetch", "--dataset", "flowers", "--root", str(tmp_path / "f"), "--mirror",
              f"http://127.0.0.1:{port}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "could not download" in err[-1] and "refused" in err[-1].lower()


@pytest.mark.parametrize("dataset", ["celebahq", "cars", "deepfashion", "triplets"])
def test_datasets_a_script_cannot_fetch_print_the_steps_and_exit_2(dataset, tmp_path, capsys):
    root = tmp_path / dataset
    with pytest.raises(SystemExit) as exit_:
        main(["data", "fetch", "--dataset", dataset, "--root", str(root)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be fetched by a script" in err[0] and str(root) in err[0]


def test_verify_reports_a_corrupt_file_and_a_missing_part(published, server, tmp_path, capsys):
    published("flowers")
    root = tmp_path / "flowers"
    fetch("flowers", root, mirror=server.url, log=lambda line: None)
    data = (root / "setid.mat").read_bytes()
    (root / "setid.mat").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    shutil.rmtree(root / "segmim", ignore_errors=True)
    states = {s.part.file: s.state for s in verify("flowers", root)}
    assert states["setid.mat"] == "corrupt" and states["102segmentations.tgz"] == "missing"
    assert states["102flowers.tgz"] == "present"
