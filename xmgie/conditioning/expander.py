"""The instruction expander (§3.2, Eq. 1–3): a visual-aware causal language model that turns the user's short
prompt P and the image X into the expressive instruction I.

    X ─ open_clip ViT ─ patch features (B, N, W) ─ linear ─ N visual tokens (B, N, E)   ("patches", LLaVA-style,
                      └ pooled e (B, D) ─ mapping MLP ─ K visual tokens (B, K, E)      as MGIE's MLLM; or "pooled",
                                                                                       ClipCap-style)
    [visual tokens | P tokens | SEP | I tokens | EOS] ─ GPT-2 ─ next-token logits        (Eq. 1)
    training: cross-entropy on I's tokens and EOS only                                    (Eq. 3)

Offline the LM is a small GPT-2 config trained from scratch over a compact open_clip BPE vocabulary; with a
local GPT-2 folder (`pretrained_lm`) it starts from those weights and their tokenizer. The vision tower is an
open_clip ViT (the family of the generator's text tower) trained with the LM.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from open_clip.model import CLIPVisionCfg, _build_vision_tower
from torch import nn

from xmgie.conditioning.decoding import beam_search, greedy
from xmgie.conditioning.vocabulary import CompactBPE, HFVocabulary, vocabulary_from_state

CHECKPOINT_KIND = "xmgie-expander"
IGNORE = -100  # label of positions without a loss (prefix, prompt, separator, padding)


@dataclass
class ExpanderConfig:
    """Sizes of the expander.

    Attributes:
        image_size: side the image is resized to for the vision tower.
        patch_size, vision_width, vision_layers, vision_heads: the open_clip ViT.
        embed_dim: the pooled image embedding e.
        visual_tokens: "patches" — one visual token per ViT patch through a linear projection (LLaVA, the MLLM
            MGIE builds on; keeps where things are); "pooled" — `prefix_tokens` tokens from e by an MLP (ClipCap).
        prefix_tokens: K visual tokens of the "pooled" prefix.
        lm_width, lm_layers, lm_heads: the GPT-2 config trained from scratch (ignored with `pretrained_lm`).
        max_prompt_tokens, max_instruction_tokens: longer texts are truncated.
        pretrained_lm: a local GPT-2 folder (weights + tokenizer, `save_pretrained` layout), or None.
    """

    image_size: int = 32
    patch_size: int = 4
    vision_width: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    embed_dim: int = 64
    visual_tokens: str = "patches"
    prefix_tokens: int = 4
    lm_width: int = 128
    lm_layers: int = 2
    lm_heads: int = 4
    max_prompt_tokens: int = 24
    max_instruction_tokens: int = 48
    pretrained_lm: str | None = None

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.vision_width % self.vision_heads or self.lm_width % self.lm_heads:
            raise ValueError("widths must be divisible by their head counts")
        if self.visual_tokens not in ("patches", "pooled"):
            raise ValueError(f"visual_tokens must be 'patches' or 'pooled', got {self.visual_tokens!r}")

    @property
    def n_visual(self) -> int:
        """Visual tokens in the prefix."""
        return (self.image_size // self.patch_size) ** 2 if self.visual_tokens == "patches" else self.prefix_tokens

    @property
    def max_positions(self) -> int:
        return self.n_visual + self.max_prompt_tokens + 1 + self.max_instruction_tokens + 1


def build_language_model(cfg: ExpanderConfig, vocab_size: int) -> nn.Module:
    """GPT2LMHeadModel: from `cfg.pretrained_lm` when given (local files only), else a small random config."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if cfg.pretrained_lm:
        try:
            return GPT2LMHeadModel.from_pretrained(cfg.pretrained_lm, local_files_only=True)
        except OSError as err:
            raise FileNotFoundError(f"no GPT-2 weights in {cfg.pretrained_lm}: {err}") from None
    config = GPT2Config(vocab_size=vocab_size, n_positions=cfg.max_positions, n_embd=cfg.lm_width,
                        n_layer=cfg.lm_layers, n_head=cfg.lm_heads, bos_token_id=None, eos_token_id=None)
    return GPT2LMHeadModel(config)


class InstructionExpander(nn.Module):
    """images (B, 3, H, W) in [-1, 1] + prompts -> expressive instructions."""

    def __init__(self, cfg: ExpanderConfig, vocab: CompactBPE | HFVocabulary, lm: nn.Module | None = None):
        """`lm`: a ready GPT-2 (loading a saved expander); default: `build_language_model(cfg, vocab.size)`."""
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        vision_cfg = CLIPVisionCfg(layers=cfg.vision_layers, width=cfg.vision_width, patch_size=cfg.patch_size,
                                   image_size=cfg.image_size, head_width=cfg.vision_width // cfg.vision_heads,
                                   output_tokens=True)
        self.vision = _build_vision_tower(cfg.embed_dim, vision_cfg)
        self.lm = lm if lm is not None else build_language_model(cfg, vocab.size)
        if cfg.max_positions > self.lm.config.n_positions:
            raise ValueError(f"the language model has {self.lm.config.n_positions} positions; visual tokens, prompt "
                             f"and instruction need up to {cfg.max_positions}")
        width, K = self.lm.config.n_embd, cfg.prefix_tokens
        if cfg.visual_tokens == "patches":  # LLaVA's projection: each patch feature (W) -> one LM token (E)
            self.mapper = nn.Linear(cfg.vision_width, width)
        else:  # ClipCap's mapping network: e (D) -> K tokens of the LM's width
            self.mapper = nn.Sequential(nn.Linear(cfg.embed_dim, width * K // 2), nn.Tanh(),
                                        nn.Linear(width * K // 2, width * K))
        self.info: dict[str, Any] = {}  # what the training stage measured (set when loaded from a file)

    # -- the visual prefix ---------------------------------------------------------------------------
    def prefix(self, images: torch.Tensor, zero: bool = False) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, N, E) visual tokens; `zero`: the same shape, all zeros (the ablation
        "without the image")."""
        B, N, E = images.shape[0], self.cfg.n_visual, self.lm.config.n_embd
        if zero:
            return torch.zeros(B, N, E, device=images.device)
        x = F.interpolate(images, size=(self.cfg.image_size,) * 2, mode="bilinear", antialias=True,
                          align_corners=False) if images.shape[-1] != self.cfg.image_size else images
        e, patches = self.vision(x)              # (B, D), (B, N, W)
        if self.cfg.visual_tokens == "patches":
            return self.mapper(patches)          # (B, N, E)
        return self.mapper(e).view(B, N, E)      # (B, K, E)

    def _embed(self, ids: list[int], device: torch.device) -> torch.Tensor:
        return self.lm.get_input_embeddings()(torch.tensor(ids, dtype=torch.long, device=device))  # (n, E)

    def _context(self, prompt: str) -> list[int]:
        """P's tokens (truncated) and the separator."""
        return self.vocab.encode(prompt)[: self.cfg.max_prompt_tokens] + [self.vocab.sep]

    # -- Eq. 3 ----------------------------------------------------------------------------------------------
    def batch_inputs(self, images: torch.Tensor, prompts: Sequence[str], instructions: Sequence[str],
                     zero_prefix: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded teacher-forcing inputs: embeddings (B, T, E), attention mask (B, T) and labels (B, T)
        holding I's tokens and EOS (IGNORE elsewhere)."""
        device = images.device
        prefix = self.prefix(images, zero_prefix)                                       # (B, K, E)
        rows, labels = [], []
        for p, text in zip(prompts, instructions):
            context = self._context(p)
            target = self.vocab.encode(text)[: self.cfg.max_instruction_tokens] + [self.vocab.eos]
            rows.append(context + target)
            labels.append([IGNORE] * (prefix.shape[1] + len(context)) + target)
        T = max(len(r) for r in rows) + prefix.shape[1]
        embeds = torch.zeros(len(rows), T, prefix.shape[2], device=device)
        mask = torch.zeros(len(rows), T, dtype=torch.long, device=device)
        label = torch.full((len(rows), T), IGNORE, dtype=torch.long, device=device)
        for i, (r, lab) in enumerate(zip(rows, labels)):
            n = prefix.shape[1] + len(r)
            embeds[i, : prefix.shape[1]] = prefix[i]
            embeds[i, prefix.shape[1]:n] = self._embed(r, device)
            mask[i, :n] = 1
            label[i, :n] = torch.tensor(lab, device=device)
        return embeds, mask, label

    def forward(self, images: torch.Tensor, prompts: Sequence[str], instructions: Sequence[str],
                zero_prefix: bool = False) -> dict[str, torch.Tensor]:
        """Eq. 3: mean cross-entropy of I's tokens given X and P; also the teacher-forced token accuracy."""
        embeds, mask, labels = self.batch_inputs(images, prompts, instructions, zero_prefix)
        logits = self.lm(inputs_embeds=embeds, attention_mask=mask).logits[:, :-1]   # (B, T-1, V) predicts t+1
        target = labels[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=IGNORE)
        scored = target != IGNORE
        correct = (logits.argmax(-1) == target) & scored
        return {"loss": loss, "correct": correct.sum(), "tokens": scored.sum()}

    # -- Eq. 1 ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompts: Sequence[str], num_beams: int = 1,
                 max_new_tokens: int | None = None, no_repeat_ngram_size: int = 0,
                 zero_prefix: bool = False) -> list[str]:
        """Expressive instructions for a batch: greedy (num_beams = 1) or beam search per image."""
        device = images.device
        prefix = self.prefix(images, zero_prefix)                                         # (B, K, E)
        contexts = [self._context(p) for p in prompts]
        limit = max_new_tokens or self.cfg.max_instruction_tokens

        def logits_for(rows: list[int]):
            def next_logits(generated: list[list[int]]) -> torch.Tensor:
                seqs = [contexts[r] + g for r, g in zip(rows, generated)]
                T = max(len(s) for s in seqs)
                K = prefix.shape[1]
                embeds = torch.zeros(len(seqs), K + T, prefix.shape[2], device=device)
                mask = torch.zeros(len(seqs), K + T, dtype=torch.long, device=device)
                for i, (r, s) in enumerate(zip(rows, seqs)):
                    start = T - len(s)  # left padding: every sequence's next token is the last position
                    embeds[i, start:start + K] = prefix[r]
                    embeds[i, start + K:] = self._embed(s, device)
                    mask[i, start:] = 1
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                return self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[:, -1]
            return next_logits

        if num_beams == 1:
            ids = greedy(logits_for(list(range(len(prompts)))), len(prompts), self.vocab.eos, limit,
                         no_repeat_ngram_size)
        else:
            ids = [beam_search(lambda gen, r=r: logits_for([r] * len(gen))(gen), self.vocab.eos, limit, num_beams,
                               no_repeat_ngram_size) for r in range(len(prompts))]
        return [self.vocab.decode(s) for s in ids]


# -- files ------------------------------------------------------------------------------------------------
def save_expander(model: InstructionExpander, path: str | Path, **info: Any) -> Path:
    """One file: config, vocabulary, weights and `info` (held-out metrics …). An HF tokenizer is copied into
    <path stem>_tokenizer/ beside it, so the file does not depend on the folder it was trained from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vocab_state = model.vocab.state()
    if isinstance(model.vocab, HFVocabulary):
        folder = path.with_name(path.stem + "_tokenizer")
        model.vocab.tokenizer.save_pretrained(folder)
        vocab_state = {"kind": "hf", "folder": folder.name}
    lm_config = model.lm.config.to_dict() if model.cfg.pretrained_lm else None
    torch.save({"kind": CHECKPOINT_KIND, "config": dataclasses.asdict(model.cfg), "vocab": vocab_state,
                "lm_config": lm_config, "state_dict": model.state_dict(), "info": info}, path)
    return path


def load_expander(path: str | Path, device: str | torch.device = "cpu") -> InstructionExpander:
    """The expander saved by `save_expander` (eval mode). A missing or foreign file is a FileNotFoundError /
    ValueError naming it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from xmgie.checkpoints import safe_load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instruction expander not found: {path} (train one: make train-expander)")
    ckpt = safe_load(path, "instruction expander")  # tensors and plain data only: nothing in the file runs
    if not isinstance(ckpt, dict) or ckpt.get("kind") != CHECKPOINT_KIND or not isinstance(ckpt.get("vocab"), dict):
        raise ValueError(f"{path} is not an instruction-expander file (make train-expander writes one)")
    folder = path.parent / ckpt["vocab"]["folder"] if ckpt["vocab"]["kind"] == "hf" else None
    vocab = vocabulary_from_state(ckpt["vocab"], folder)
    cfg = ExpanderConfig(**{**ckpt["config"], "pretrained_lm": None})
    # a fine-tuned GPT-2: its architecture from the saved config; every weight comes from the file
    lm = GPT2LMHeadModel(GPT2Config.from_dict(ckpt["lm_config"])) if ckpt["lm_config"] is not None else None
    model = InstructionExpander(cfg, vocab, lm)
    model.load_state_dict(ckpt["state_dict"])
    model.info = ckpt.get("info", {})
    return model.to(device).eval()
