"""Every dataset by name: importing this file imports each dataset's module, which registers its class in
`data_modules.base.DATASETS`; `build_datamodule` builds one by name."""
from __future__ import annotations

import inspect
from typing import Any

from data_modules import cars, celebahq, coco, cub, deepfashion, flowers, synthetic, triplets  # noqa: F401 (register)
from data_modules.base import DATASETS, EditDataModule


def build_datamodule(name: str, root: str | None = None, **kwargs: Any) -> EditDataModule:
    """Instantiate the dataset registered as `name` (reading it from `root` when it is on disk); an unknown name
    is a one-line error."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    if root is not None:
        if "root" not in inspect.signature(DATASETS[name].__init__).parameters:
            raise KeyError(f"dataset {name!r} is generated, not read from disk: it takes no root")
        kwargs["root"] = root
    return DATASETS[name](**kwargs)
