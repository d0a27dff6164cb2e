"""The instruction-expander stage (§3.2): fit the visual-aware LM on a dataset's (X, P, I) triples with Eq. 3,
then score it on the held-out split twice — with the image and with the visual prefix zeroed — so the value of
seeing the image is measured, not assumed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import sacrebleu
import torch

from data_modules.base import EditDataModule, EditSample
from xmgie.conditioning.expander import ExpanderConfig, InstructionExpander, save_expander
from xmgie.conditioning.vocabulary import UNK, CompactBPE, HFVocabulary
from xmgie.training.stage_trainer import fit_stage, stage_datamodule

VOCAB_SAMPLES = 2000  # training samples whose texts make the compact vocabulary


class ExpanderModule(L.LightningModule):
    def __init__(self, model: InstructionExpander, lr: float = 1e-3, weight_decay: float = 0.01):
        super().__init__()
        self.model, self.lr, self.weight_decay = model, lr, weight_decay

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        if "source" not in batch:
            return None
        out = self.model(batch["source"], batch["prompt"], batch["instruction"])
        self.log("train/lm_loss", out["loss"], prog_bar=True)
        self.log("train/token_accuracy", out["correct"] / out["tokens"].clamp(min=1))
        return out["loss"]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def training_texts(dm: EditDataModule, n: int = VOCAB_SAMPLES) -> list[str]:
    """Prompts and instructions of the first `n` training samples (the compact vocabulary's corpus)."""
    ds = dm.dataset("train")
    samples = (ds[i] for i in range(min(n, len(ds))))
    return [t for s in samples if isinstance(s, EditSample) for t in (s.prompt, s.instruction)]


@torch.no_grad()
def held_out_metrics(model: InstructionExpander, loader, zero_prefix: bool = False, num_beams: int = 1,
                     limit: int | None = None, no_repeat_ngram_size: int = 0) -> dict[str, Any]:
    """Teacher-forced token accuracy and loss of I, and corpus BLEU (sacrebleu) and exact match of generated
    instructions against the annotated ones, over at most `limit` images of `loader`."""
    model.eval()
    correct = tokens = 0
    loss_sum = 0.0
    hyps, refs, shown = [], [], []
    device = next(model.parameters()).device
    for batch in loader:
        if "source" not in batch:
            continue
        keep = len(batch["prompt"]) if limit is None else min(len(batch["prompt"]), limit - len(refs))
        if keep <= 0:
            break
        images, prompts, instr = batch["source"][:keep].to(device), batch["prompt"][:keep], batch["instruction"][:keep]
        out = model(images, prompts, instr, zero_prefix=zero_prefix)
        correct, tokens = correct + int(out["correct"]), tokens + int(out["tokens"])
        loss_sum += float(out["loss"]) * int(out["tokens"])
        hyps += model.generate(images, prompts, num_beams=num_beams, zero_prefix=zero_prefix,
                               no_repeat_ngram_size=no_repeat_ngram_size)
        refs += list(instr)
        shown += list(prompts)
    exact = sum(h.strip() == r.strip() for h, r in zip(hyps, refs))
    return {"token_accuracy": round(correct / max(tokens, 1), 4), "loss": round(loss_sum / max(tokens, 1), 4),
            "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
            "exact_match": round(exact / max(len(refs), 1), 4), "images": len(refs),
            "examples": [{"prompt": p, "generated": h, "reference": r} for p, h, r in zip(shown, hyps, refs)][:3]}


def train_instruction_expander(dataset: str, out: str | Path, steps: int = 1500, batch_size: int = 32,
                               lr: float = 1e-3, resolution: int | None = None, seed: int = 0,
                               root: str | None = None, pretrained_lm: str | None = None,
                               eval_images: int = 256, config: ExpanderConfig | None = None,
                               visual_tokens: str = "patches") -> dict[str, Any]:
    """Train the expander on `dataset`'s train split and save it to `out` (+ a .json of held-out metrics).

    1. Vocabulary: the compact BPE table of the training texts, or the local GPT-2's tokenizer.
    2. Fit Eq. 3 for `steps` batches (AdamW).
    3. Held-out (test split, `eval_images`): token accuracy, loss, BLEU and exact match of greedy decoding,
       with the image and with the visual prefix zeroed.
    """
    dm = stage_datamodule(dataset, batch_size, resolution, seed, root)
    vocab = HFVocabulary(pretrained_lm) if pretrained_lm else CompactBPE.build(training_texts(dm))
    cfg = config or ExpanderConfig(image_size=dm.resolution, pretrained_lm=pretrained_lm, visual_tokens=visual_tokens)
    model = InstructionExpander(cfg, vocab)
    fit_stage(ExpanderModule(model, lr), dm, steps)
    model.eval()
    test = dm.loader("test", shuffle=False)
    visual = held_out_metrics(model, test, limit=eval_images)
    blind = held_out_metrics(model, test, zero_prefix=True, limit=eval_images)
    result = {"dataset": dataset, "resolution": dm.resolution, "steps": steps, "seed": seed,
              "vocabulary": vocab.size, "pretrained_lm": pretrained_lm, "visual_tokens": cfg.visual_tokens,
              "held_out": {"visual": visual, "zeroed_prefix": blind}}
    if isinstance(vocab, CompactBPE):  # held-out words the training texts never used
        result["held_out_unknown_tokens"] = sum(t == UNK for s in held_out_instructions(dm, eval_images)
                                                for t in vocab.encode(s))
    result["written_to"] = str(save_expander(model, out, **result))
    Path(out).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def held_out_instructions(dm: EditDataModule, n: int) -> list[str]:
    ds = dm.dataset("test")
    return [s.instruction for s in (ds[i] for i in range(min(n, len(ds)))) if isinstance(s, EditSample)]
