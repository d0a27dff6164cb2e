"""The seven file-backed loaders on their miniature trees: splits, the sample contract, mask alignment, text,
attributes, identities and the caption protocol's seeded pairs."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from data_modules import build_datamodule
from data_modules.base import EditSample, collate
from data_modules.deepfashion import NAMES
from data_modules.fixtures import CELEBA_ATTRIBUTES, OBJECT_COLOUR, write_fixture
from data_modules.records import FileDataModule, pairing
from tests.data_modules.conftest import LOADERS

RES = 32
# split sizes the 12-image fixtures are built to give (val carved from train where there is no official one)
SPLITS = {"cub": (8, 1, 3), "flowers": (7, 1, 4), "coco": (7, 1, 4), "celebahq": (8, 1, 3), "cars": (7, 1, 4),
          "deepfashion": (7, 1, 4), "triplets": (7, 1, 4)}
ATTRIBUTES = {"cub": 312, "flowers": 0, "coco": 0, "celebahq": 40, "cars": 0, "deepfashion": 80, "triplets": 0}
IDENTITIES = {"cub": 4, "flowers": 3, "coco": 0, "celebahq": 3, "cars": 3, "deepfashion": 6, "triplets": 0}


def _dm(name, root, **kwargs) -> FileDataModule:
    return build_datamodule(name, root=str(root), resolution=RES, batch_size=4, **kwargs)


def _samples(dm, split, paired=False) -> list[EditSample]:
    ds = dm.dataset(split, paired)
    return [ds[i] for i in range(len(ds))]


def _object_pixels(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [-1, 1] → (H, W) bool: pixels painted the fixture's object colour."""
    rgb = (image + 1) * 127.5
    return (rgb - torch.tensor(OBJECT_COLOUR, dtype=torch.float32)[:, None, None]).norm(dim=0) < 60


@pytest.mark.parametrize("name", LOADERS)
def test_split_sizes_and_sample_contract(name, fixture_trees):
    dm = _dm(name, fixture_trees[name])
    assert tuple(len(dm.dataset(s)) for s in ("train", "val", "test")) == SPLITS[name]
    assert dm.num_attributes == ATTRIBUTES[name] and dm.num_identities == IDENTITIES[name]
    assert dm.protocol == ("targets" if name == "triplets" else "captions")
    assert dm.hide_masked_source == (name != "triplets")
    for split in ("train", "val", "test"):
        for s in _samples(dm, split):
            assert isinstance(s, EditSample), s
            assert s.source.shape == s.target.shape == (3, RES, RES) and s.mask.shape == (1, RES, RES)
            assert s.source.dtype == torch.float32 and -1 <= s.source.min() and s.source.max() <= 1
            assert set(s.mask.unique().tolist()) <= {0.0, 1.0} and s.mask.any()
            assert s.attributes.shape == (ATTRIBUTES[name],)
            assert set(s.attributes.unique().tolist()) <= {0.0, 1.0}
            assert (-1 if IDENTITIES[name] == 0 else 0) <= s.identity < max(IDENTITIES[name], 1)
            assert s.prompt and s.instruction and s.prompt.rstrip(".") in s.instruction
            if name == "triplets":
                assert not torch.equal(s.source, s.target)
            else:
                assert torch.equal(s.source, s.target)  # caption datasets reconstruct the source
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == (4, 3, RES, RES) and batch["attributes"].shape == (4, ATTRIBUTES[name])


@pytest.mark.parametrize("name", LOADERS)
def test_the_object_drawn_at_a_known_place_lands_in_the_mask(name, fixture_trees):
    """Every fixture paints the annotated object one colour: after crop and resize its pixels lie in the mask,
    and the mask is mostly that object (a misaligned or transposed mask fails both)."""
    dm = _dm(name, fixture_trees[name])
    for s in _samples(dm, "train") + _samples(dm, "test"):
        obj, mask = _object_pixels(s.source), s.mask[0] > 0
        assert obj.sum() > 20, "the object should be visible after the crop"
        assert (obj & mask).sum() / obj.sum() > 0.95, s.prompt
        assert (obj & mask).sum() / mask.sum() > 0.75, s.prompt


@pytest.mark.parametrize("name", ["cub", "coco", "celebahq", "deepfashion"])
def test_alignment_holds_when_large_jpegs_are_decoded_at_reduced_scale(name, tmp_path):
    """scale 4: crops of 200+ px at 32 px decode at 1/4 or 1/8 scale (draft mode); masks still align and the
    pixels match a full decode closely."""
    from data_modules import images

    dm = _dm(name, write_fixture(name, tmp_path / name, n_images=6, scale=4))
    drafted = _samples(dm, "train")
    for s in drafted:
        obj, mask = _object_pixels(s.source), s.mask[0] > 0
        assert (obj & mask).sum() / obj.sum() > 0.95 and (obj & mask).sum() / mask.sum() > 0.75
    images.DRAFT = False
    try:
        full = [s.source for s in _samples(_dm(name, dm.root), "train")]
    finally:
        images.DRAFT = True
    for a, b in zip(drafted, full):
        assert (a.source - b).abs().mean() < 0.03


def test_triplet_targets_differ_from_sources_only_inside_the_mask(fixture_trees):
    for s in _samples(_dm("triplets", fixture_trees["triplets"]), "test"):
        changed = (s.source - s.target).abs().amax(0) > 0.3
        near_mask = torch.nn.functional.max_pool2d(s.mask[None], 3, 1, 1)[0, 0] > 0  # antialiased edges
        assert changed.sum() > 20 and bool(near_mask[changed].all())


def test_instruction_pix2pix_layout(tmp_path):
    dm = _dm("triplets", write_fixture("triplets", tmp_path / "p2p", layout="pix2pix"))
    s = _samples(dm, "test")[0]
    assert s.prompt == "make the ball blue" and "a blue ball on grass" in s.instruction
    assert s.mask.all()  # no mask in this layout: edit anywhere


def test_magicbrush_parquet_shards_read_as_the_json_layout(tmp_path, fixture_trees):
    """The hub's shards (same seed: the same triplets as the JSON fixture) give the same samples; unpacked once,
    again when a shard changes; a shard without MagicBrush's columns is a one-line error."""
    pytest.importorskip("pyarrow")
    from xmgie.errors import UserError

    root = write_fixture("triplets", tmp_path / "mb", layout="parquet")
    assert not (root / "edit_sessions.json").exists() and list((root / "data").glob("*.parquet"))
    dm, ref = _dm("triplets", root, cache=False), _dm("triplets", fixture_trees["triplets"], cache=False)
    assert [r.key for r in dm.records()["test"]] == [r.key for r in ref.records()["test"]]
    for a, b in zip(_samples(dm, "test"), _samples(ref, "test")):
        assert torch.equal(a.source, b.source) and torch.equal(a.target, b.target) and torch.equal(a.mask, b.mask)
        assert a.prompt == b.prompt
    unpacked = root / ".unpacked" / "edit_sessions.json"
    stamp = unpacked.stat().st_mtime_ns
    _dm("triplets", root, cache=False).records()
    assert unpacked.stat().st_mtime_ns == stamp  # not unpacked twice
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), root / "data" / "train-00001-of-00002.parquet")
    with pytest.raises(UserError, match="not a MagicBrush shard: no column img_id"):
        _dm("triplets", root, cache=False).records()


def test_cars_mirror_with_nested_folders(tmp_path):
    dm = _dm("cars", write_fixture("cars", tmp_path / "cars", nested=True))
    assert all(isinstance(s, EditSample) for s in _samples(dm, "train"))
    assert dm.records()["train"][0].image.startswith("cars_train/cars_train/")


def test_cub_attributes_identities_and_captions_match_the_annotation_files(fixture_trees):
    root = fixture_trees["cub"]
    dm = _dm("cub", root)
    base = root / "CUB_200_2011"
    images = dict(line.split() for line in (base / "images.txt").read_text().splitlines())
    expected = np.zeros((len(images), 312))
    for line in (base / "attributes/image_attribute_labels.txt").read_text().splitlines():
        f = line.split()
        expected[int(f[0]) - 1, int(f[1]) - 1] = int(f[2])
    by_path = {v: int(k) for k, v in images.items()}
    for rec in dm.records()["train"] + dm.records()["test"]:
        i = by_path[rec.key]
        assert np.array_equal(rec.attributes, expected[i - 1])
        assert rec.identity == int(rec.key[:3]) - 1  # the class folder's number
        assert rec.captions == tuple((root / "text_c10" / rec.key.replace(".jpg", ".txt")).read_text().splitlines())
    # the class-disjoint split: no test class in train
    assert not {r.identity for r in dm.records()["test"]} & {r.identity for r in dm.records()["train"]}
    official = _dm("cub", root, split="official")
    assert {r.key for r in official.records()["test"]} == {
        images[f[0]] for f in map(str.split, (base / "train_test_split.txt").read_text().splitlines()) if f[1] == "0"}


def test_celebahq_attributes_identities_and_split_follow_the_mapping(fixture_trees):
    root = fixture_trees["celebahq"]
    dm = _dm("celebahq", root)
    rows = (root / "CelebAMask-HQ/CelebAMask-HQ-attribute-anno.txt").read_text().splitlines()[2:]
    attrs = {r.split()[0]: np.array([int(v) > 0 for v in r.split()[1:]], np.float32) for r in rows}
    celeb = dict(line.split() for line in (root / "Anno/identity_CelebA.txt").read_text().splitlines())
    mapping = {f"{f[0]}.jpg": f[2] for f in map(str.split, (root / "CelebAMask-HQ/CelebA-HQ-to-CelebA-mapping.txt")
                                                 .read_text().splitlines()[1:])}
    records = [r for split in dm.records().values() for r in split]
    assert len(records) == 12
    for r in records:
        assert np.array_equal(r.attributes, attrs[r.key])
    # the same CelebA identity ⇔ the same label
    for a in records:
        for b in records:
            assert (a.identity == b.identity) == (celeb[mapping[a.key]] == celeb[mapping[b.key]])
    assert len(CELEBA_ATTRIBUTES) == 40


def test_deepfashion_item_views_share_identity_and_split(fixture_trees):
    dm = _dm("deepfashion", fixture_trees["deepfashion"])
    where = {r.key: (split, r.identity) for split, recs in dm.records().items() for r in recs}
    items: dict[str, set] = {}
    for key, (split, identity) in where.items():
        items.setdefault(key.split("-")[2], set()).add((split.replace("val", "train"), identity))
    assert all(len(v) == 1 for v in items.values())  # an item never crosses splits, one identity per item
    rec = dm.records()["train"][0]
    on = {NAMES[i] for i in np.flatnonzero(rec.attributes)}
    assert {"upper fabric: cotton", "lower fabric: denim", "upper pattern: pure colour"} <= on
    assert not any(n.startswith(("outer fabric", "outer pattern")) for n in on)  # label 7 = NA sets nothing


@pytest.mark.parametrize("name", [n for n in LOADERS if n != "triplets"])
def test_seeded_mismatched_pairs(name, fixture_trees):
    """The test protocol: each test image with the text of another test image, the same pairs on every run and
    for any batch size; source, mask and identity stay the image's own."""
    dm, again = _dm(name, fixture_trees[name]), _dm(name, fixture_trees[name])
    records = dm.records()["test"]
    partner = pairing(len(records), dm.seed)
    paired, own = _samples(dm, "test", paired=True), _samples(dm, "test")
    for i, (p, o) in enumerate(zip(paired, own)):
        j = int(partner[i])
        assert j != i and p.prompt == records[j].captions[0]
        assert torch.equal(p.source, o.source) and p.identity == o.identity
        if records[j].attributes is not None:
            assert torch.equal(p.attributes, torch.from_numpy(records[j].attributes))
    assert [s.prompt for s in _samples(again, "test", paired=True)] == [s.prompt for s in paired]
    for batch_size in (2, 3):
        loader = torch.utils.data.DataLoader(dm.dataset("test", True), batch_size=batch_size, collate_fn=collate)
        assert [x for batch in loader for x in batch["prompt"]] == [s.prompt for s in paired]
    assert next(iter(dm.test_dataloader()))["prompt"][0] == paired[0].prompt  # Lightning's test = the protocol


@pytest.mark.parametrize("n", [2, 3, 10, 101])
def test_pairing_is_one_cycle_without_fixed_points(n):
    p = pairing(n, seed=7)
    assert sorted(p.tolist()) == list(range(n)) and all(p[i] != i for i in range(n))
    seen, i = set(), 0
    while i not in seen:  # following partners visits every index once
        seen.add(i)
        i = int(p[i])
    assert len(seen) == n
    assert np.array_equal(p, pairing(n, seed=7))
    if n >= 10:
        assert not np.array_equal(p, pairing(n, seed=8))


def test_celebahq_test_masks_cover_the_parts_the_edited_attributes_touch(fixture_trees):
    from data_modules.celebahq import FACE_AND_HAIR, edited_parts

    names = list(CELEBA_ATTRIBUTES)
    before, after = np.zeros(40), np.zeros(40)
    after[names.index("Blond_Hair")] = 1
    assert edited_parts(names, before, after) == ("hair",)
    after[names.index("Smiling")] = 1
    assert set(edited_parts(names, before, after)) == {"hair", "mouth", "u_lip", "l_lip", "skin"}
    assert edited_parts(names, before, before) == FACE_AND_HAIR
    root = fixture_trees["celebahq"]
    dm = _dm("celebahq", root)
    records, partner = dm.records()["test"], pairing(len(dm.records()["test"]), dm.seed)
    for i, s in enumerate(_samples(dm, "test", paired=True)):
        rec, other = records[i], records[int(partner[i])]
        expected = torch.zeros(64, 64)  # the fixture's part files are 64², its images 128², both square
        for part in edited_parts(names, rec.attributes, other.attributes):
            path = root / f"{rec.mask}_{part}.png"
            if path.exists():
                expected = torch.maximum(expected, torch.from_numpy(np.array(Image.open(path)) > 0).float())
        down = torch.nn.functional.interpolate(expected[None, None], size=(RES, RES), mode="area")[0, 0] >= 0.5
        union = (down | (s.mask[0] > 0)).sum()
        assert (down & (s.mask[0] > 0)).sum() / union > 0.85


def test_json_captions_of_deepfashion_are_the_prompts(fixture_trees):
    root = fixture_trees["deepfashion"]
    captions = json.loads((root / "captions.json").read_text())
    for r in _dm("deepfashion", root).records()["test"]:
        assert r.captions == (captions[r.key],)
