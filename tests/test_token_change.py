"""TokenChange's numeric core (models/token_change.py) on a tiny randomly initialised Llama built in memory:
a direction planted on one token's unembedding row promotes that token first, its negation suppresses it
first, and the mean change is the brute-force mean over windows and positions."""

from __future__ import annotations

import pytest
import torch

from autointerp.models.token_change import TokenChangeProbe

VOCAB, WIDTH = 64, 32


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def windows():
    return torch.randint(3, VOCAB, (5, 7), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("token", [5, 17, 40])
def test_a_planted_direction_promotes_its_token_first_and_its_negation_suppresses_it(tiny_model, windows, token):
    probe = TokenChangeProbe(tiny_model, windows, bos_id=1, batch_size=2)
    direction = tiny_model.lm_head.weight[token].detach()
    promoted = probe.change("model.layers.1", direction, 50.0, k=5)
    assert promoted.promoted[0][0] == token and promoted.promoted[0][1] > 0
    suppressed = probe.change("model.layers.1", direction, -50.0, k=5)
    assert suppressed.suppressed[0][0] == token and suppressed.suppressed[0][1] < 0
    values = [v for _, v in promoted.promoted]
    assert values == sorted(values, reverse=True) and len(promoted.suppressed) == 5


def test_mean_change_is_the_brute_force_mean_over_windows_and_positions(tiny_model, windows):
    probe = TokenChangeProbe(tiny_model, windows, bos_id=1, batch_size=2)
    direction = torch.randn(WIDTH, generator=torch.Generator().manual_seed(2))
    change = probe.change("model.layers.0", direction, 3.0, k=VOCAB)

    def logprobs(steer: bool) -> torch.Tensor:
        ids = torch.cat([torch.ones(windows.shape[0], 1, dtype=torch.long), windows], dim=1)
        handle = None
        if steer:
            handle = tiny_model.model.layers[0].register_forward_hook(
                lambda m, i, o: (o[0] + 3.0 * direction, *o[1:]) if isinstance(o, tuple) else o + 3.0 * direction
            )
        try:
            with torch.no_grad():
                out = torch.log_softmax(tiny_model(ids).logits.double(), -1)[:, 1:]  # the BOS position left out
        finally:
            if handle:
                handle.remove()
        return out.reshape(-1, VOCAB).mean(0)

    expected = (logprobs(True) - logprobs(False)).float()
    got = torch.zeros(VOCAB)
    for token, value in change.promoted:
        got[token] = value
    assert torch.allclose(got, expected, atol=1e-5)
    assert [t for t, _ in change.suppressed] == expected.argsort()[:VOCAB].tolist()
