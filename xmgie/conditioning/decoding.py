"""Greedy and beam-search decoding (Eq. 1) over any `next_logits(tokens) -> (N, V)` function, with an end
token, a maximum length and `no_repeat_ngram_size`. Pure functions of token lists and tensors."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

NextLogits = Callable[[list[list[int]]], torch.Tensor]  # N generated-token lists -> (N, V) next-token logits


def banned_tokens(tokens: Sequence[int], n: int) -> set[int]:
    """Tokens that would repeat an n-gram already in `tokens` (none when n < 1 or too few tokens)."""
    if n < 1 or len(tokens) < n - 1:
        return set()
    if n == 1:
        return set(tokens)
    prefix = tuple(tokens[len(tokens) - n + 1:])
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tuple(tokens[i:i + n - 1]) == prefix}


def _ban(logits: torch.Tensor, seqs: list[list[int]], n: int) -> torch.Tensor:
    """(N, V) logits with the n-gram repeats of each sequence set to -inf."""
    if n < 1:
        return logits
    logits = logits.clone()
    for row, seq in enumerate(seqs):
        banned = banned_tokens(seq, n)
        if banned:
            logits[row, list(banned)] = float("-inf")
    return logits


def greedy(next_logits: NextLogits, batch: int, eos: int, max_new_tokens: int,
           no_repeat_ngram_size: int = 0) -> list[list[int]]:
    """The most likely token at each step, for `batch` sequences; each ends at its first `eos` (not kept)."""
    seqs: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    for _ in range(max_new_tokens):
        logits = _ban(next_logits(seqs).float(), seqs, no_repeat_ngram_size)
        choice = logits.argmax(-1).tolist()
        for i, token in enumerate(choice):
            if not done[i]:
                if token == eos:
                    done[i] = True
                else:
                    seqs[i].append(token)
        if all(done):
            break
    return seqs


def beam_search(next_logits: NextLogits, eos: int, max_new_tokens: int, num_beams: int = 4,
                no_repeat_ngram_size: int = 0, length_penalty: float = 1.0) -> list[int]:
    """Beam search for one sequence: keeps the `num_beams` best partial sequences by summed log-probability; a
    finished one is scored by sum / length**length_penalty; stops once `num_beams` have finished. Returns the
    best finished one (or the best open one when none finished within `max_new_tokens`)."""
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for _ in range(max_new_tokens):
        logp = torch.log_softmax(_ban(next_logits([b[0] for b in beams]).float(), [b[0] for b in beams],
                                      no_repeat_ngram_size), dim=-1)                      # (beams, V)
        total = torch.tensor([b[1] for b in beams])[:, None] + logp                        # (beams, V)
        scores, flat = total.flatten().topk(min(2 * num_beams, total.numel()))
        candidates = []
        for score, index in zip(scores.tolist(), flat.tolist()):
            if score == float("-inf"):
                break
            beam, token = divmod(index, logp.shape[1])
            seq = beams[beam][0]
            if token == eos:
                finished.append((seq, score / max(len(seq), 1) ** length_penalty))
            else:
                candidates.append((seq + [token], score))
            if len(candidates) == num_beams:
                break
        if not candidates:
            break
        beams = candidates
        if len(finished) >= num_beams:
            break  # as many finished hypotheses as beams: stop early
    pool = finished or [(q, s / max(len(q), 1) ** length_penalty) for q, s in beams]
    return max(pool, key=lambda f: f[1])[0]
