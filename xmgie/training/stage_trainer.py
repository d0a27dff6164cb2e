"""What the auxiliary training stages (identity encoder, attribute classifier) share: a seeded dataset and a
plain Trainer run for a fixed number of steps, without logger or checkpoints (their result is one file)."""
from __future__ import annotations

from typing import Any

import lightning as L

from data_modules.base import EditDataModule
from data_modules.registry import build_datamodule
from xmgie.errors import UserError


def stage_datamodule(dataset: str, batch_size: int, resolution: int | None, seed: int,
                     root: str | None = None) -> EditDataModule:
    """Seed everything, then the named dataset, read from `root` when it is on disk (an unknown name is a
    one-line error)."""
    L.seed_everything(seed, verbose=False)
    kwargs = {"batch_size": batch_size} | ({"resolution": resolution} if resolution else {})
    try:
        return build_datamodule(dataset, root=root, **kwargs)
    except KeyError as err:
        raise UserError(str(err.args[0])) from None


def fit_stage(module: L.LightningModule, dm: EditDataModule, steps: int) -> None:
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        accelerator="auto", devices=1, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=dm.loader("train", shuffle=True))


def data_facts(dm: EditDataModule, hide_masked_source: bool) -> dict[str, Any]:
    """What a checkpoint records of the data it was trained on (`xmgie evaluate` and `xmgie edit` follow it)."""
    facts = {"dataset": dm.name, "resolution": dm.resolution, "hide_masked_source": hide_masked_source}
    if getattr(dm, "root", None) is not None:
        facts["root"] = str(dm.root)
    if dm.notes:
        facts["notes"] = dm.notes  # what the data fell back on (e.g. a split without its class lists)
    return facts
