"""The evaluation suite inside a Lightning run: at each validation and test the module's edits stream into
EditingMetrics, the values are logged as `val/<metric>` / `test/<metric>`, and a test writes a result file.

The suite lives here, not in the LightningModule, so its backbones (Inception alone is ~95 MB) never enter a
checkpoint. States are synced across DDP ranks by torchmetrics at compute().

    xmgie fit --config experiments/train.yaml --config experiments/evaluation.yaml
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from xmgie.evaluation.evaluate import attribute_backbone, identity_backbone
from xmgie.metrics.metrics import EditingMetrics, EditQuality

# the generator module logs these itself (val/psnr, val/psnr_gain, …): the callback adds the rest
LOGGED_BY_MODULE = {*EditQuality.KEYS, "psnr_gain", "n_images"}


class EvaluationCallback(L.Callback):
    """Args:
        inception / lpips: include IS+FID / LPIPS (backbones from $XMGIE_WEIGHTS, else uncalibrated).
        identity: IPS encoder (E_id file or "vggface2"); attributes: AA classifier file.
        strict_weights: a missing backbone file is an error instead of an uncalibrated metric.
        splits: IS splits.
    """

    def __init__(self, inception: bool = True, lpips: bool = True, identity: str | None = None,
                 attributes: str | None = None, strict_weights: bool = False, splits: int = 10, seed: int = 0):
        self.options = dict(inception=inception, lpips=lpips, strict=strict_weights, splits=splits, seed=seed)
        self.identity, self.attributes = identity, attributes
        self.suite: EditingMetrics | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.suite is None:
            dm = trainer.datamodule
            self.suite = EditingMetrics(
                getattr(dm, "protocol", "targets"), **self.options,
                attribute_classifier=attribute_backbone(self.attributes),
                identity_encoder=identity_backbone(self.identity, self.options["strict"], self.options["seed"]))
            for metric in self.suite.uncalibrated:
                rank_zero_warn(f"{metric} uses an UNCALIBRATED backbone ({self.suite.backbones[metric].source}): "
                               f"its values are not comparable to published numbers (`xmgie weights status`)")
        self.suite.to(pl_module.device)

    def _batch_end(self, outputs: Any, batch: dict) -> None:
        if isinstance(outputs, dict) and "edit" in outputs:
            self.suite.update(outputs["edit"], batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._batch_end(outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_end(outputs, batch)

    def _log(self, pl_module: L.LightningModule, prefix: str) -> dict[str, float]:
        values = self.suite.compute()  # synced over ranks: identical on each
        self.suite.reset()
        pl_module.log_dict({f"{prefix}/{k}": float(v) for k, v in values.items() if k not in LOGGED_BY_MODULE},
                           sync_dist=False)
        return values

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self.suite.metrics["quality"].psnr_n > 0:
            self._log(pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        values = self._log(pl_module, "test")
        self._write(trainer, values)

    @rank_zero_only
    def _write(self, trainer: L.Trainer, values: dict[str, float]) -> None:
        record = {"method": "xmgie", "dataset": getattr(trainer.datamodule, "name", None), "split": "test",
                  **self.suite.record(values), "seed": self.options["seed"], "global_step": trainer.global_step}
        path = Path(trainer.default_root_dir) / "results" / f"test_step{trainer.global_step:06d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
