"""`xmgie fit|validate|test`: LightningCLI over XMGIEModule and any registered EditDataModule.

Every run lives in one folder, `--trainer.default_root_dir` (default `runs/<dataset>/default`):
    checkpoints/last.ckpt   rewritten every `--checkpoint_every` steps and on Ctrl-C / SIGTERM (resume point)
    checkpoints/best.ckpt   the best validation PSNR gain
    metrics.csv hparams.yaml config.yaml   the logger's files and the resolved config
    samples/step_*.png metrics.json        validation sample grids and metrics
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger

from data_modules.base import EditDataModule
from xmgie.training.callbacks import ResumePoint, RunArtifacts
from xmgie.training.lit_generator import XMGIEModule
from xmgie.training.lit_identity import train_missing_identity


class StepProgressBar(TQDMProgressBar):
    """A training bar that stays right after a resume: Lightning's bar ends at the steps left (`max_steps`) but
    counts from the restored batch index, so it overflowed and its rate and ETA counted the skipped batches.

    On an accelerator it refreshes every `log_every_n_steps` steps: each refresh reads the logged losses back
    to the host, which would make every step wait for the device."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not isinstance(trainer.accelerator, CPUAccelerator) and self._refresh_rate == 1:
            self._refresh_rate = max(1, trainer.log_every_n_steps)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._done = trainer.fit_loop.epoch_loop.batch_progress.current.ready  # batches of this epoch already run
        super().on_train_epoch_start(trainer, pl_module)
        self.train_progress_bar.initial = self._done  # rate and ETA from the batches run now

    @property
    def total_train_batches(self):
        total = super().total_train_batches  # min(epoch length, steps left) when max_steps bounds the run
        return min(self.trainer.num_training_batches, total + getattr(self, "_done", 0))


def run_callbacks(root: Path, checkpoint_every: int, progress_bar: bool = True) -> list:
    ckpt_dir = root / "checkpoints"
    return [
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/psnr_gain", mode="max", save_top_k=1,
                        enable_version_counter=False),
        ModelCheckpoint(dirpath=ckpt_dir, monitor=None, save_top_k=0, save_last=True,
                        every_n_train_steps=checkpoint_every, enable_version_counter=False),  # never last-v1.ckpt
        ResumePoint(ckpt_dir / "last.ckpt"),
        RunArtifacts(root),
    ] + ([StepProgressBar()] if progress_bar else [])


class XMGIECLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--checkpoint_every", type=int, default=100,
                            help="rewrite checkpoints/last.ckpt every this many steps")
        parser.add_argument("--train_missing", type=bool, default=False,
                            help="when the run turns IE on and its identity encoder file is missing, train it first")

    def before_fit(self) -> None:
        if self.config["fit"].get("train_missing"):
            train_missing_identity(self.model, self.datamodule)

    def instantiate_trainer(self, **kwargs: Any):
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer_cfg = self._get(self.config_init, "trainer", default={})
        root = Path(trainer_cfg.get("default_root_dir") or Path("runs") / self.datamodule.name / "default")
        kwargs["default_root_dir"] = str(root)
        kwargs["callbacks"] = list(trainer_cfg.get("callbacks") or []) + run_callbacks(
            root, config.checkpoint_every, progress_bar=trainer_cfg.get("enable_progress_bar") is not False)
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = CSVLogger(root, name="", version="")
        return super().instantiate_trainer(**kwargs)


def run_lightning_cli(argv: list[str] | None) -> None:
    XMGIECLI(XMGIEModule, EditDataModule, subclass_mode_data=True, args=argv,
             save_config_kwargs={"overwrite": True}, parser_kwargs={"default_env": False})
