"""Files a training run leaves for people: a sample grid per validation and `metrics.json`."""
from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from xmgie.visualize import save_grid


class RunArtifacts(L.Callback):
    """Writes `<run>/samples/step_XXXXXX.png` (source | mask | edit | target) and `<run>/metrics.json`
    (the latest validation metrics, the best PSNR gain so far, steps and wall time) after each validation."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.start = time.monotonic()
        self.history: list[dict] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.monotonic()

    def state_dict(self) -> dict:  # the history survives a resume
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        step = trainer.global_step
        ex = getattr(pl_module, "val_examples", None)
        if ex is not None:
            rows = [[ex["source"][i], ex["mask"][i], ex["edit"][i], ex["target"][i]] for i in range(len(ex["prompt"]))]
            save_grid(rows, self.run_dir / "samples" / f"step_{step:06d}.png", captions=ex["prompt"],
                      header=["source", "mask", "edit", "target"])
        val = {k.removeprefix("val/"): round(float(v), 4) for k, v in trainer.callback_metrics.items()
               if k.startswith("val/")}
        self.history.append({"step": step, **val})
        best = max(self.history, key=lambda h: h.get("psnr_gain", float("-inf")))
        report = {"step": step, "epoch": trainer.current_epoch, "wall_time_s": round(time.monotonic() - self.start, 1),
                  "split": "val", "val": val, "best": best, "history": self.history}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "metrics.json").write_text(json.dumps(report, indent=2))


class ResumePoint(L.Callback):
    """Writes `last.ckpt` when fit ends and when it is interrupted (Ctrl-C, SIGTERM, an error), so a rerun
    resumes from there. (Lightning's OnExceptionCheckpoint deletes its file at teardown: no use as `last`.)"""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.global_step > 0:  # a failure before the first step (e.g. in set-up) leaves nothing to resume
            trainer.save_checkpoint(self.path)
