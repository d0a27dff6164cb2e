"""The tokenizer and text transformer the generator uses are this package's own; open_clip's are the reference:
the same ids for any text, the same parameters (names, shapes, initial values) and the same features."""
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer as OpenClipTextTransformer

from xmgie.conditioning.bpe import BPETokenizer
from xmgie.conditioning.text_encoder import VOCAB_SIZE
from xmgie.conditioning.text_transformer import TextTransformer

TEXTS = [
    "", "make the circle red", "Put a HAT on the  square!", "move it 3 px left; keep the rest", "a" * 300,
    "l'oiseau n'est pas là — café, naïve, 東京, 🙂🙂", "&amp;lt;b&amp;gt; and &quot;quotes&quot;", "x",
    "she's, they've, we'll, I'd, it's", "12345 67.5%", "<start_of_text> inside <END_OF_TEXT> text",
    "tab\tnew\nline   spaces", "ÃƒÂ© mojibake", "the " * 60, "¡¬®ÿ\x00\x7f control",
]


@pytest.mark.parametrize("context_length", [8, 48, 77])
def test_bpe_ids_equal_open_clips(context_length):
    ours, ref = BPETokenizer(context_length), SimpleTokenizer(context_length=context_length)
    assert ours.vocab_size == len(ref.encoder) and ours.encoder == ref.encoder
    assert torch.equal(ours(TEXTS), ref(TEXTS))
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == ref.encode(text)
        assert ours.decode(ids) == ref.decode(ids)


@pytest.mark.parametrize("causal", [True, False])
def test_text_transformer_matches_open_clips(causal):
    cfg = dict(context_length=12, vocab_size=VOCAB_SIZE, width=32, heads=4, layers=2)
    torch.manual_seed(0)
    ours = TextTransformer(**cfg, causal=causal).eval()
    torch.manual_seed(0)
    ref = OpenClipTextTransformer(**cfg, output_dim=None, output_tokens=True, no_causal_mask=not causal).eval()
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)  # a checkpoint written with either loads into the other
    assert all(torch.equal(a[k], b[k]) for k in a)  # same initialisation from the same seed
    with torch.no_grad():
        for p in ref.parameters():  # trained-looking weights, not the initial ones
            p.add_(torch.randn_like(p) * 0.05)
    ours.load_state_dict(ref.state_dict())
    ids = BPETokenizer(12)(["make the circle red", "a hat", "everything blue please now"])
    with torch.no_grad():
        for x, y in zip(ours(ids), ref(ids)):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
