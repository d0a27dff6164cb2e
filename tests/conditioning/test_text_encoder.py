import pytest
import torch

from xmgie.conditioning import TextEncoder, TextEncoderConfig


@pytest.mark.parametrize("causal", [True, False])
def test_causal_mask_decides_whether_early_tokens_see_later_words(causal):
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(context_length=16, width=32, layers=1, heads=2, causal=causal)).eval()
    tok = enc.tokenize(["make the circle red", "make the circle blue"])  # differ in the 5th token only
    assert torch.equal(tok[0, :4], tok[1, :4]) and tok[0, 4] != tok[1, 4]
    with torch.no_grad():
        features, pooled = enc(tok)
    assert features.shape == (2, 16, 32) and pooled.shape == (2, 32)
    same_prefix = torch.allclose(features[0, :4], features[1, :4], atol=1e-6)
    assert same_prefix == causal  # causal: tokens before "red"/"blue" cannot see them
    assert not torch.allclose(pooled[0], pooled[1])


def test_tokenizer_pads_and_truncates_to_the_context_length():
    enc = TextEncoder(TextEncoderConfig(context_length=8, width=32, layers=1, heads=2))
    tok = enc.tokenize(["", "a " * 20])
    assert tok.shape == (2, 8) and tok[0, 0] == 49406 and tok[0, 1] == 49407 and (tok[0, 2:] == 0).all()
    assert tok[1, -1] == 49407  # truncated text still ends with the end token
    with pytest.raises(ValueError, match="divisible"):
        TextEncoderConfig(width=30, heads=4)
