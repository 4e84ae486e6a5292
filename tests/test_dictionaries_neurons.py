"""MLP neurons as a dictionary, on tiny randomly initialised Llama and GPT-2 models."""

from __future__ import annotations

import pytest
import torch

from autointerp.errors import AutointerpError
from autointerp.models.dictionaries import check_input_size, mlp_neurons

transformers = pytest.importorskip("transformers")

HIDDEN, MLP = 32, 64


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def capture(model, module, ids):
    """What ``module`` receives and returns in a forward pass, via hooks."""
    seen = {}

    def hook(_module, args, output):
        seen["input"], seen["output"] = args[0].detach(), output.detach()

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        handle.remove()
    return seen["input"], seen["output"]


def test_llama_neurons_are_the_down_projection_input(llama):
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(1))
    mlp = llama.model.layers[1].mlp
    mlp_in, _ = capture(llama, mlp, ids)
    down_in, down_out = capture(llama, mlp.down_proj, ids)
    with torch.no_grad():  # the neurons, from the MLP's own formula: act(gate(x)) * up(x)
        reference = torch.nn.functional.silu(mlp_in @ mlp.gate_proj.weight.T) * (mlp_in @ mlp.up_proj.weight.T)
    torch.testing.assert_close(down_in, reference, rtol=1e-5, atol=1e-6)

    d = mlp_neurons(llama, "model.layers.1.mlp.down_proj")
    assert (d.hookpoint, d.reads, d.signed) == ("model.layers.1.mlp.down_proj", "input", True)
    assert d.d_in == d.d_sae == MLP
    check_input_size(d, down_in.shape[-1])
    torch.testing.assert_close(d.encode(down_in), reference, rtol=1e-5, atol=1e-6)
    # decoder directions are the down projection's columns: latents @ directions is its output
    torch.testing.assert_close(d.encode(down_in) @ d.decoder_directions(), down_out, rtol=1e-5, atol=1e-6)
    assert mlp_neurons(llama, "model.layers.1.mlp").hookpoint == "model.layers.1.mlp.down_proj"


def test_llama_neurons_top_k_keeps_k_per_token_by_magnitude(llama):
    ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(2))
    down_in, _ = capture(llama, llama.model.layers[0].mlp.down_proj, ids)
    d = mlp_neurons(llama, "model.layers.0", k=5)
    got = d.encode(down_in)
    assert ((got != 0).sum(-1) == 5).all() and (got < 0).any()
    kept = got != 0
    smallest_kept = torch.where(kept, down_in.abs(), torch.inf).amin(-1)
    largest_dropped = torch.where(kept, -torch.inf, down_in.abs()).amax(-1)
    assert (smallest_kept >= largest_dropped).all()
    torch.testing.assert_close(got[kept], down_in[kept])  # kept with their sign and value
    values, indices = d.encode_sparse(down_in)
    assert values.shape == indices.shape == (2, 9, 5)


def test_gpt2_neurons_use_the_mlp_c_proj_columns():
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_embd=HIDDEN, n_layer=2, n_head=4, n_positions=32, vocab_size=100)
    ).eval()
    ids = torch.randint(0, 100, (1, 6), generator=torch.Generator().manual_seed(3))
    c_proj = model.transformer.h[1].mlp.c_proj
    down_in, down_out = capture(model, c_proj, ids)
    d = mlp_neurons(model, "transformer.h.1")  # the block holds attn.c_proj and mlp.c_proj: the MLP's is read
    assert d.hookpoint == "transformer.h.1.mlp.c_proj" and d.d_sae == 4 * HIDDEN
    torch.testing.assert_close(d.encode(down_in) @ d.decoder_directions() + c_proj.bias, down_out, rtol=1e-5, atol=1e-5)


def test_neuron_errors(llama):
    with pytest.raises(AutointerpError, match="no module named 'model.layers.9'"):
        mlp_neurons(llama, "model.layers.9")
    with pytest.raises(AutointerpError, match="k=0"):
        mlp_neurons(llama, "model.layers.0.mlp.down_proj", k=0)
    with pytest.raises(AutointerpError, match="Cannot tell which down projection"):
        mlp_neurons(llama, "model.embed_tokens")
