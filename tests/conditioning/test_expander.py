"""The instruction expander: vocabularies, decoding, Eq. 3 training, deterministic generation, files, and a local
GPT-2 folder loading through the same path a user's would."""
import pytest
import torch

from xmgie.conditioning.decoding import banned_tokens, beam_search, greedy
from xmgie.conditioning.expander import ExpanderConfig, InstructionExpander, load_expander, save_expander
from xmgie.conditioning.vocabulary import EOS, UNK, CompactBPE, HFVocabulary

TEXTS = ["make the circle red", "change the blue striped circle in the upper left to red, keep its stripes",
         "make the square green", "change the pink dotted square at the bottom to green, keep its dots"]
SMALL = dict(image_size=16, patch_size=4, vision_width=32, vision_layers=1, vision_heads=2, embed_dim=32,
             prefix_tokens=2, lm_width=32, lm_layers=1, lm_heads=2, max_instruction_tokens=24)


def _model(seed: int = 0, visual_tokens: str = "patches") -> InstructionExpander:
    torch.manual_seed(seed)
    return InstructionExpander(ExpanderConfig(**SMALL, visual_tokens=visual_tokens), CompactBPE.build(TEXTS))


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 16, 16, generator=g) * 2 - 1, [TEXTS[0], TEXTS[2]], [TEXTS[1], TEXTS[3]]


def test_compact_vocabulary_round_trips_and_marks_unknown_words():
    v = CompactBPE.build(TEXTS)
    for t in TEXTS:
        assert v.decode(v.encode(t)) == t
    assert UNK in v.encode("make the hexagon red") and v.size < 60
    assert v.decode(v.encode(TEXTS[0]) + [EOS] + v.encode("square")) == TEXTS[0]  # stops at EOS


def test_banned_tokens_and_greedy_against_a_fixed_table():
    assert banned_tokens([1, 2, 3, 1, 2], 3) == {3} and banned_tokens([1, 2], 3) == set()
    assert banned_tokens([5, 6], 1) == {5, 6}
    table = torch.tensor([[0.0, 5.0, 1.0, 0.0], [0.0, 1.0, 5.0, 0.0], [9.0, 0.0, 0.0, 1.0]])  # by step

    def next_logits(seqs):
        return torch.stack([table[min(len(s), 2)] for s in seqs])

    assert greedy(next_logits, 2, eos=0, max_new_tokens=5) == [[1, 2], [1, 2]]
    assert beam_search(next_logits, eos=0, max_new_tokens=5, num_beams=3) == [1, 2]
    # a repeat ban forces the second-best token
    def repeat(seqs):
        return torch.tensor([[0.0, 5.0, 4.0, -9.0]] * len(seqs))

    assert greedy(repeat, 1, eos=3, max_new_tokens=3, no_repeat_ngram_size=1) == [[1, 2, 0]]


@pytest.mark.parametrize("visual_tokens", ["patches", "pooled"])
def test_a_training_step_lowers_the_loss_on_a_fixed_batch(visual_tokens):
    model = _model(visual_tokens=visual_tokens)
    images, prompts, instructions = _batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = float(model(images, prompts, instructions)["loss"])
    for _ in range(5):
        loss = model(images, prompts, instructions)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model(images, prompts, instructions)["loss"]) < first - 0.5


def test_loss_covers_the_instruction_tokens_only():
    model = _model()
    images, prompts, instructions = _batch()
    _, mask, labels = model.batch_inputs(images, prompts, instructions)
    v, K = model.vocab, model.cfg.n_visual
    for i in range(2):
        target = v.encode(instructions[i]) + [v.eos]
        scored = labels[i][labels[i] != -100].tolist()
        assert scored == target
        start = K + len(v.encode(prompts[i])) + 1  # prefix, prompt, separator
        assert labels[i, start:start + len(target)].tolist() == target
        assert int(mask[i].sum()) == start + len(target)


def test_greedy_generation_is_deterministic_and_batch_independent():
    model = _model().eval()
    images, prompts, _ = _batch()
    a = model.generate(images, prompts, max_new_tokens=8)
    assert a == model.generate(images, prompts, max_new_tokens=8)
    # left padding: each row decodes as it would alone
    assert [model.generate(images[i:i + 1], prompts[i:i + 1], max_new_tokens=8)[0] for i in range(2)] == a
    beams = model.generate(images, prompts, num_beams=3, max_new_tokens=8, no_repeat_ngram_size=2)
    assert len(beams) == 2 and all(isinstance(b, str) for b in beams)


@pytest.mark.parametrize("visual_tokens", ["patches", "pooled"])
def test_zeroed_prefix_removes_the_image(visual_tokens):
    model = _model(visual_tokens=visual_tokens).eval()
    images, prompts, instructions = _batch()
    blind = model(images, prompts, instructions, zero_prefix=True)["loss"]
    other = model(torch.rand_like(images), prompts, instructions, zero_prefix=True)["loss"]
    assert torch.equal(blind, other)  # no image information reaches the LM
    assert not torch.equal(model(images, prompts, instructions)["loss"], blind)
    assert model.prefix(images).shape == (2, model.cfg.n_visual, 32)
    assert model.cfg.n_visual == (16 if visual_tokens == "patches" else 2)


def test_expander_file_round_trip(tmp_path):
    model = _model().eval()
    images, prompts, _ = _batch()
    path = save_expander(model, tmp_path / "m.pt", held_out={"bleu": 1.0})
    again = load_expander(path)
    assert again.generate(images, prompts, max_new_tokens=6) == model.generate(images, prompts, max_new_tokens=6)
    assert again.info["held_out"] == {"bleu": 1.0}
    with pytest.raises(FileNotFoundError, match="make train-expander"):
        load_expander(tmp_path / "missing.pt")
    torch.save({"kind": "other"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an instruction-expander"):
        load_expander(tmp_path / "x.pt")


@pytest.fixture()
def gpt2_folder(tmp_path):
    """A local GPT-2 folder as `save_pretrained` writes it: a tiny random config and a byte-level BPE tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 5, vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            unk_token="<|endoftext|>")
    folder = tmp_path / "gpt2"
    tok.save_pretrained(folder)
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=96, n_embd=32, n_layer=1, n_head=2))
    lm.save_pretrained(folder)
    return folder


def test_a_local_gpt2_folder_loads_trains_and_round_trips(gpt2_folder, tmp_path):
    vocab = HFVocabulary(gpt2_folder)
    assert vocab.decode(vocab.encode(TEXTS[1])) == TEXTS[1]
    cfg = ExpanderConfig(**{**SMALL, "pretrained_lm": str(gpt2_folder)})
    model = InstructionExpander(cfg, vocab)
    from transformers import GPT2LMHeadModel

    saved = GPT2LMHeadModel.from_pretrained(gpt2_folder)
    assert torch.equal(model.lm.transformer.wte.weight, saved.transformer.wte.weight)  # the folder's weights
    images, prompts, instructions = _batch()
    loss = model(images, prompts, instructions)["loss"]
    loss.backward()
    model.eval()
    path = save_expander(model, tmp_path / "ft" / "m.pt")
    again = load_expander(path)  # needs neither the original folder's path nor network
    assert again.generate(images, prompts, max_new_tokens=5) == model.generate(images, prompts, max_new_tokens=5)
    with pytest.raises(FileNotFoundError):
        HFVocabulary(tmp_path / "nowhere")
