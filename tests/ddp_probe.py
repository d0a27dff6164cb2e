"""A callback for the DDP test: each rank writes its weights and one random draw after training."""
import os

import lightning as L
import torch


class SaveRankState(L.Callback):
    def on_train_end(self, trainer, pl_module) -> None:
        path = os.path.join(trainer.default_root_dir, f"rank{trainer.global_rank}.pt")
        torch.save({"state_dict": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
                    "draw": torch.rand(8)}, path)
