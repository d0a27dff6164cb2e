"""Mask decoders and the crop, each against a brute-force reference."""
import numpy as np
import pytest
import torch

from data_modules.fixtures import _rle_counts
from data_modules.images import centre_crop, crop_resize, object_crop
from data_modules.masks import (box_mask, coco_segmentation_mask, label_mask, location_phrase, not_background_colour,
                                polygons_mask, rle_mask, threshold_mask)


def _naive_rle(counts, h, w):
    flat, value = [], False
    for run in counts:
        flat += [value] * run
        value = not value
    out = np.zeros((h, w), bool)
    for k, v in enumerate(flat):  # column-major: k = x * h + y
        out[k % h, k // h] = v
    return out


@pytest.mark.parametrize("seed", range(5))
def test_rle_matches_a_pixel_loop(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(3, 20, size=2)
    counts = []
    left = h * w
    while left:
        run = int(min(left, rng.integers(0, 9)))
        counts.append(run)
        left -= run
    assert np.array_equal(rle_mask(counts, h, w), _naive_rle(counts, h, w))
    mask = rng.random((h, w)) < 0.4
    assert np.array_equal(rle_mask(_rle_counts(mask), h, w), mask)  # the fixture writer's encoding round-trips
    with pytest.raises(ValueError, match="sum"):
        rle_mask(counts + [1], h, w)


def _inside(px, py, poly):
    """Ray casting: is (px, py) inside the polygon [(x, y), …]?"""
    inside = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        if (y1 > py) != (y2 > py) and px < x1 + (py - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def test_polygons_match_ray_casting_away_from_edges():
    poly = [(3.0, 4.0), (25.0, 2.0), (28.0, 20.0), (12.0, 27.0), (5.0, 18.0)]
    mask = polygons_mask([[v for p in poly for v in p]], (32, 30))
    assert mask.shape == (30, 32)
    for y in range(30):
        for x in range(32):
            inside = _inside(x, y, poly)
            # pixels within 1 px of an edge are rasteriser-dependent; all others must agree
            near = any(_inside(x + dx, y + dy, poly) != inside for dx in (-1, 0, 1) for dy in (-1, 0, 1))
            if not near:
                assert mask[y, x] == inside, (x, y)
    # a segmentation value dispatches on its type: polygons, or uncompressed RLE with a list of counts
    assert np.array_equal(coco_segmentation_mask([[v for p in poly for v in p]], (32, 30)), mask)
    rle = {"counts": _rle_counts(mask), "size": [30, 32]}
    assert np.array_equal(coco_segmentation_mask(rle, (32, 30)), mask)


def test_box_threshold_label_and_colour_masks():
    m = box_mask((2.0, 3.0, 4.0, 2.0), (10, 8))
    ref = np.zeros((8, 10), bool)
    ref[3:5, 2:6] = True
    assert np.array_equal(m, ref)
    assert box_mask((-5, -5, 100, 100), (10, 8)).all()  # clipped to the image
    gray = np.array([[0, 127, 128, 255]], np.uint8)
    assert threshold_mask(gray).tolist() == [[False, False, True, True]]
    labels = np.array([[0, 1, 5], [21, 13, 2]])
    assert label_mask(labels, (1, 2, 5, 21)).tolist() == [[False, True, True], [True, False, True]]
    rgb = np.array([[[0, 0, 254], [10, 20, 230], [200, 30, 200], [0, 0, 120]]], np.uint8)
    assert not_background_colour(rgb).tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("centre, words", [((2, 2), "in the upper left"), ((15, 15), "in the centre"),
                                           ((28, 15), "on the right"), ((15, 2), "at the top"),
                                           ((2, 28), "in the lower left")])
def test_location_phrase(centre, words):
    m = np.zeros((32, 32), bool)
    x, y = centre
    m[max(0, y - 2):y + 2, max(0, x - 2):x + 2] = True
    assert location_phrase(m) == words
    assert location_phrase(np.zeros((4, 4), bool)) == "" and location_phrase(np.ones((4, 4), bool)) == ""


def test_object_crop_and_alignment():
    # r = 0.75 · max(w, h) around the bbox centre, clipped to the image
    assert object_crop((40, 50, 20, 10), (200, 100)) == (35.0, 40.0, 65.0, 70.0)
    assert object_crop((0, 0, 40, 40), (50, 50)) == (0.0, 0.0, 50.0, 50.0)
    assert centre_crop((120, 80)) == (20.0, 0.0, 100.0, 80.0)
    image = np.zeros((60, 80, 3), np.uint8)
    mask = np.zeros((60, 80), bool)
    image[20:40, 30:50] = 255
    mask[20:40, 30:50] = True
    img, m = crop_resize(image, mask, (20, 10, 60, 50), 16)  # a 40² crop → 16²: the square lands at 4..12
    expected = torch.zeros(16, 16)
    expected[4:12, 4:12] = 1
    assert torch.equal(m[0], expected)
    assert bool((img[:, 5:11, 5:11] > 0.9).all()) and bool((img[:, :3] < -0.9).all())
