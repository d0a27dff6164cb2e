from pathlib import Path

import pytest

from data_modules.fixtures import WRITERS, write_fixture

LOADERS = tuple(WRITERS)  # cub flowers coco celebahq cars deepfashion triplets


@pytest.fixture(scope="session")
def fixture_trees(tmp_path_factory) -> dict[str, Path]:
    """One 12-image miniature tree per dataset, written once and only read by the tests that share it."""
    base = tmp_path_factory.mktemp("fixtures")
    return {name: write_fixture(name, base / name, n_images=12) for name in LOADERS}
