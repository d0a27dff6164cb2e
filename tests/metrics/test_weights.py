"""The weights registry and backbone loading: files the tests write in the real formats go through the same
code path as a user's download; a wrong sha256 is refused; a missing file means an uncalibrated backbone."""
import dataclasses
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from xmgie import weights
from xmgie.errors import UserError
from xmgie.metrics import networks


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(weights.ENV, str(tmp_path))
    return tmp_path


def pin_to(monkeypatch, name: str, path: Path) -> None:
    """Point the registry's hash at a test file (the real pins are of the published files)."""
    monkeypatch.setitem(weights.REGISTRY, name, dataclasses.replace(weights.REGISTRY[name],
                                                                    sha256=weights.sha256_of(path)))


def test_registry_has_a_url_and_a_pin_kind_for_every_backbone():
    assert {"inception", "alexnet", "vggface2", "clip", "ip2p"} <= set(weights.REGISTRY)
    for s in weights.REGISTRY.values():
        assert s.url.startswith("https://") and s.pin in ("full", "prefix", "none")
    assert weights.REGISTRY["clip"].pin == "full" and weights.REGISTRY["inception"].pin == "prefix"
    # torch.hub names carry the sha256 prefix: the pin is that prefix
    assert weights.REGISTRY["inception"].filename.endswith(weights.REGISTRY["inception"].sha256 + ".pth")


def test_missing_file_gives_an_uncalibrated_backbone_and_strict_names_the_fix(folder):
    net, info = networks.inception(seed=3)
    assert not info.calibrated and info.sha256 is None and "seed 3" in info.source
    with pytest.raises(UserError) as err:
        networks.inception(strict=True)
    msg = str(err.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and "xmgie weights fetch inception" in msg
    assert weights.REGISTRY["inception"].url in msg


def test_uncalibrated_inception_is_seeded_and_not_degenerate(folder):
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    a, _ = networks.inception(seed=0)
    b, _ = networks.inception(seed=0)
    pool_a, logits_a = a(x)
    assert torch.equal(pool_a, b(x)[0])
    assert pool_a.shape == (2, 2048) and logits_a.shape == (2, 1008)
    assert pool_a.std() > 1e-3  # PyTorch's default init would give ~1e-8 everywhere


def test_inception_file_in_the_real_format_loads_and_is_recorded(folder, monkeypatch):
    source, _ = networks.inception(seed=7)  # random weights, saved as a user's download would be
    path = weights.path_of("inception")
    torch.save(source.state_dict(), path)
    pin_to(monkeypatch, "inception", path)
    net, info = networks.inception(strict=True, seed=0)
    assert info.calibrated and info.sha256 == weights.sha256_of(path) and info.source == str(path)
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(net(x)[0], source(x)[0])


def test_a_wrong_sha256_is_refused_with_a_clear_error(folder):
    path = weights.path_of("inception")
    torch.save({"not": torch.zeros(1)}, path)  # hashes to anything but 6726825d…
    for build in (lambda: networks.inception(), lambda: weights.check("inception")):
        with pytest.raises(UserError) as err:
            build()
        assert "expected 6726825d" in str(err.value) and "delete it" in str(err.value)
    assert [r["state"] for r in weights.status() if r["name"] == "inception"] == ["mismatch"]


def test_alexnet_file_loads_into_lpips_feature_slices(folder, monkeypatch):
    torch.manual_seed(0)
    alex = torchvision.models.alexnet()
    path = weights.path_of("alexnet")
    torch.save(alex.state_dict(), path)
    pin_to(monkeypatch, "alexnet", path)
    net, info = networks.alexnet_lpips(strict=True)
    assert info.calibrated
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    # the deepest LPIPS feature is AlexNet's features[:12] (conv5 + ReLU) on the same input
    assert torch.allclose(net.net(x)[-1], alex.features[:12](x), atol=1e-5)
    d = net(x, x.flip(0))
    assert d.shape == (2, 1, 1, 1) and (d >= 0).all() and not any(p.requires_grad for p in net.parameters())


def test_unpinned_vggface2_file_is_used_and_its_sha256_recorded(folder):
    from facenet_pytorch import InceptionResnetV1

    path = weights.path_of("vggface2")
    torch.save(InceptionResnetV1(pretrained=None).state_dict(), path)
    encoder, info = networks.facenet()
    assert info.calibrated and info.sha256 == weights.sha256_of(path)
    row = next(r for r in weights.status() if r["name"] == "vggface2")
    assert row["state"] == "present" and row["pin"] == "none"


def test_fetch_downloads_checks_and_never_leaves_a_partial_file(folder, tmp_path_factory, monkeypatch):
    upstream = tmp_path_factory.mktemp("upstream") / "alexnet.pth"
    torch.save({"w": torch.arange(4)}, upstream)
    s = dataclasses.replace(weights.REGISTRY["alexnet"], url=upstream.as_uri(), sha256=weights.sha256_of(upstream))
    monkeypatch.setitem(weights.REGISTRY, "alexnet", s)
    path = weights.fetch("alexnet")
    assert path.read_bytes() == upstream.read_bytes()
    path.unlink()
    monkeypatch.setitem(weights.REGISTRY, "alexnet", dataclasses.replace(s, sha256="0" * 64))
    with pytest.raises(UserError, match="expected 0000"):
        weights.fetch("alexnet")
    assert not path.exists()

    def offline(request, timeout=None):
        raise urllib.error.URLError("no network")

    with pytest.raises(UserError, match="could not download"):
        weights.fetch("alexnet", opener=offline)
    assert list(folder.iterdir()) == []
