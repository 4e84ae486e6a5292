"""Every dictionary format, written in its exact on-disk layout, encodes like the formula written out here.

References are computed directly in each test (loops or plain tensor algebra), never through
autointerp's own code. Library-saved dictionaries are in test_dictionaries_libraries.py, MLP neurons in
test_dictionaries_neurons.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from autointerp.errors import AutointerpError
from autointerp.models.dictionaries import check_input_size, load_dictionary

D_IN, D_SAE, D_OUT = 12, 40, 10


def rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def inputs(seed=1, d=D_IN):
    return rand(3, 5, d, seed=seed, scale=2.0)


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_safetensors(path, tensors):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def top_k_dense(scores, values, k):
    """Reference TopK by brute force: per position, keep ``values`` at the k largest ``scores``."""
    out = torch.zeros_like(values)
    flat_s, flat_v, flat_o = (
        scores.reshape(-1, scores.shape[-1]),
        values.reshape(-1, values.shape[-1]),
        out.view(-1, out.shape[-1]),
    )
    for row in range(flat_s.shape[0]):
        order = sorted(range(flat_s.shape[1]), key=lambda i: -float(flat_s[row, i]))[:k]
        for i in order:
            flat_o[row, i] = flat_v[row, i]
    return out


# ----------------------------------------------------------------------------------------------- SAELens


def saelens_weights(seed=0, d_out=D_IN):
    return {
        "W_enc": rand(D_IN, D_SAE, seed=seed),
        "b_enc": rand(D_SAE, seed=seed + 1, scale=0.3),
        "W_dec": rand(D_SAE, d_out, seed=seed + 2),
        "b_dec": rand(d_out, seed=seed + 3, scale=0.3),
    }


def write_saelens(folder, cfg, tensors):
    write_json(folder / "cfg.json", cfg)
    write_safetensors(folder / "sae_weights.safetensors", tensors)


@pytest.mark.parametrize("layout", ["v6", "v5"])
def test_saelens_relu_both_layouts(tmp_path, layout):
    w = saelens_weights()
    cfg = (
        {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "metadata": {"hook_name": "model.layers.2"}}
        if layout == "v6"
        else {"activation_fn_str": "relu", "hook_name": "model.layers.2", "d_in": D_IN}
    )
    write_saelens(tmp_path, cfg, w)  # no apply_b_dec_to_input: SAELens' default (True)
    write_safetensors(tmp_path / "sparsity.safetensors", {"sparsity": rand(D_SAE)})  # ignored
    x = inputs()
    expected = torch.clamp(torch.einsum("btd,dl->btl", x - w["b_dec"], w["W_enc"]) + w["b_enc"], min=0)
    d = load_dictionary(tmp_path)
    torch.testing.assert_close(d.encode(x), expected)
    assert (d.format, d.hookpoint, d.reads, d.signed, d.d_in, d.d_sae) == (
        "SAELens",
        "model.layers.2",
        "output",
        False,
        D_IN,
        D_SAE,
    )
    torch.testing.assert_close(d.decoder_directions(), w["W_dec"])


@pytest.mark.parametrize("rescale", [False, True])
def test_saelens_topk_with_and_without_decoder_norm_rescaling(tmp_path, rescale):
    w = saelens_weights(seed=4)
    write_saelens(
        tmp_path,
        {"architecture": "topk", "k": 5, "apply_b_dec_to_input": False, "rescale_acts_by_decoder_norm": rescale},
        w,
    )
    x = inputs()
    pre = x @ w["W_enc"] + w["b_enc"]
    norms = w["W_dec"].norm(dim=-1)
    if rescale:
        pre = pre * norms
    expected = top_k_dense(pre, pre.clamp(min=0), 5)
    d = load_dictionary(tmp_path)
    torch.testing.assert_close(d.encode(x), expected, rtol=1e-5, atol=1e-5)
    values, indices = d.encode_sparse(x)
    assert values.shape == indices.shape == (3, 5, 5)
    # steering latent i by 1 adds what SAELens' decode adds for it: W_dec[i] / |W_dec[i]| when rescaled
    torch.testing.assert_close(d.decoder_directions(), w["W_dec"] / norms[:, None] if rescale else w["W_dec"])


@pytest.mark.parametrize("stored_as", ["threshold", "log_threshold"])
def test_saelens_jumprelu(tmp_path, stored_as):
    w = saelens_weights(seed=7)
    threshold = torch.rand(D_SAE, generator=torch.Generator().manual_seed(8)) * 2
    w[stored_as] = threshold if stored_as == "threshold" else threshold.log()
    write_saelens(tmp_path, {"architecture": "jumprelu", "apply_b_dec_to_input": True}, w)
    x = inputs()
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    expected = torch.where(pre > threshold, pre, torch.zeros(()))
    got = load_dictionary(tmp_path).encode(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert 0 < int((got > 0).sum()) < int((pre > 0).sum())


def test_saelens_gated(tmp_path):
    w = saelens_weights(seed=10)
    del w["b_enc"]
    w.update(
        b_gate=rand(D_SAE, seed=11, scale=0.5),
        b_mag=rand(D_SAE, seed=12, scale=0.5),
        r_mag=rand(D_SAE, seed=13, scale=0.3),
    )
    write_saelens(tmp_path, {"architecture": "gated", "apply_b_dec_to_input": True}, w)
    x = inputs()
    centred = x - w["b_dec"]
    gate = (centred @ w["W_enc"] + w["b_gate"]) > 0
    magnitude = torch.clamp(centred @ (w["W_enc"] * torch.exp(w["r_mag"])) + w["b_mag"], min=0)
    expected = gate.float() * magnitude
    torch.testing.assert_close(load_dictionary(tmp_path).encode(x), expected, rtol=1e-5, atol=1e-5)
    assert 0 < int((expected > 0).sum()) < int((magnitude > 0).sum())


def test_saelens_expected_average_only_in_folds_the_stored_factor(tmp_path):
    w = saelens_weights(seed=14)
    write_saelens(
        tmp_path,
        {"architecture": "standard", "apply_b_dec_to_input": True, "normalize_activations": "expected_average_only_in"},
        w,
    )
    with pytest.raises(AutointerpError, match="no scaling factor"):
        load_dictionary(tmp_path)
    write_json(tmp_path / "activation_scaler.json", {"scaling_factor": 0.25})
    x = inputs()
    expected = torch.clamp((x * 0.25 - w["b_dec"]) @ w["W_enc"] + w["b_enc"], min=0)  # SAELens scales inputs
    d = load_dictionary(tmp_path)
    torch.testing.assert_close(d.encode(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d.decoder_directions(), w["W_dec"] / 0.25)  # back in the model's units


def test_saelens_other_normalisations_are_refused(tmp_path):
    write_saelens(tmp_path, {"architecture": "standard", "normalize_activations": "layer_norm"}, saelens_weights())
    with pytest.raises(AutointerpError, match="normalize_activations='layer_norm'.*not supported"):
        load_dictionary(tmp_path)


def test_saelens_abstopk_keeps_signed_latents(tmp_path):
    w = saelens_weights(seed=15)
    write_saelens(tmp_path, {"architecture": "abstopk", "k": 4, "apply_b_dec_to_input": False}, w)
    x = inputs()
    pre = x @ w["W_enc"] + w["b_enc"]
    expected = top_k_dense(pre.abs(), pre, 4)
    d = load_dictionary(tmp_path)
    got = d.encode(x)
    torch.testing.assert_close(got, expected)
    assert d.signed and (got < 0).any() and ((got != 0).sum(-1) == 4).all()


def test_saelens_batchtopk_checkpoint_uses_its_threshold(tmp_path):
    w = saelens_weights(seed=16)
    w["topk_threshold"] = torch.tensor(1.2)
    write_saelens(tmp_path, {"architecture": "batchtopk", "k": 4.0, "apply_b_dec_to_input": False}, w)
    x = inputs()
    pre = (x @ w["W_enc"] + w["b_enc"]) * w["W_dec"].norm(dim=-1)  # training configs rescale by default
    expected = torch.where(pre > 1.2, pre, torch.zeros(()))
    torch.testing.assert_close(load_dictionary(tmp_path).encode(x), expected, rtol=1e-5, atol=1e-5)


def test_saelens_skip_transcoder_reads_the_mlp_input(tmp_path):
    w = saelens_weights(seed=17, d_out=D_OUT)
    w["W_skip"] = rand(D_OUT, D_IN, seed=18)
    write_saelens(
        tmp_path,
        {
            "architecture": "skip_transcoder",
            "d_out": D_OUT,
            "apply_b_dec_to_input": False,
            "metadata": {"hook_name": "blocks.1.ln2.hook_normalized", "hook_name_out": "blocks.1.hook_mlp_out"},
        },
        w,
    )
    x = inputs()
    latents = torch.clamp(x @ w["W_enc"] + w["b_enc"], min=0)  # b_dec is in the output space: not subtracted
    d = load_dictionary(tmp_path)
    torch.testing.assert_close(d.encode(x), latents)
    torch.testing.assert_close(d.decode(latents, x), latents @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"].T)
    assert (d.reads, d.hookpoint, d.hookpoint_out) == ("input", "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out")
    assert d.decoder_directions().shape == (D_SAE, D_OUT)


# ----------------------------------------------------------------------------------------------- sparsify


def sparsify_weights(seed=20, skip=False):
    w = {
        "encoder.weight": rand(D_SAE, D_IN, seed=seed),
        "encoder.bias": rand(D_SAE, seed=seed + 1, scale=0.3),
        "W_dec": rand(D_SAE, D_IN, seed=seed + 2),
        "b_dec": rand(D_IN, seed=seed + 3, scale=0.3),
    }
    if skip:
        w["W_skip"] = rand(D_IN, D_IN, seed=seed + 4)
    return w


def write_sparsify(folder, cfg, tensors):
    write_json(
        folder / "cfg.json",
        {
            "d_in": D_IN,
            "num_latents": D_SAE,
            "expansion_factor": 32,
            "normalize_decoder": True,
            "multi_topk": False,
            **cfg,
        },
    )
    write_safetensors(folder / "sae.safetensors", tensors)


def test_sparsify_topk(tmp_path):
    w = sparsify_weights()
    write_sparsify(tmp_path / "layers.3", {"k": 6, "activation": "topk", "transcode": False}, w)
    x = inputs()
    pre = torch.clamp((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"], min=0)
    d = load_dictionary(tmp_path / "layers.3")
    torch.testing.assert_close(d.encode(x), top_k_dense(pre, pre, 6), rtol=1e-5, atol=1e-5)
    values, indices = d.encode_sparse(x)
    assert values.shape == (3, 5, 6) and (d.hookpoint, d.reads, d.format) == ("layers.3", "output", "sparsify")
    torch.testing.assert_close(d.decoder_directions(), w["W_dec"])


def test_sparsify_transcoder_with_skip_connection(tmp_path):
    w = sparsify_weights(seed=30, skip=True)
    write_sparsify(tmp_path / "layers.0.mlp", {"k": 5, "transcode": True, "skip_connection": True}, w)
    x = inputs()
    pre = torch.clamp(x @ w["encoder.weight"].T + w["encoder.bias"], min=0)  # a transcoder does not centre x
    latents = top_k_dense(pre, pre, 5)
    d = load_dictionary(tmp_path / "layers.0.mlp")
    torch.testing.assert_close(d.encode(x), latents, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        d.decode(latents, x), latents @ w["W_dec"] + w["b_dec"] + x @ w["W_skip"].T, rtol=1e-5, atol=1e-5
    )
    assert d.reads == "input"


def test_sparsify_groupmax(tmp_path):
    w = sparsify_weights(seed=40)
    write_sparsify(tmp_path / "h.1", {"k": 8, "activation": "groupmax"}, w)
    x = inputs()
    pre = torch.clamp((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"], min=0)
    expected = torch.zeros_like(pre)
    group = D_SAE // 8
    for g in range(8):
        block = pre[..., g * group : (g + 1) * group]
        best = block.argmax(-1, keepdim=True)
        expected[..., g * group : (g + 1) * group].scatter_(-1, best, block.gather(-1, best))
    torch.testing.assert_close(load_dictionary(tmp_path / "h.1").encode(x), expected, rtol=1e-5, atol=1e-5)


def test_sparsify_release_folder_lists_and_picks_hookpoints(tmp_path):
    for i in (0, 1):
        write_sparsify(tmp_path / f"layers.{i}", {"k": 4}, sparsify_weights(seed=50 + 10 * i))
    write_json(tmp_path / "config.json", {"model": "tiny", "batch_size": 8})  # training config beside them
    with pytest.raises(AutointerpError, match=r"2 dictionaries.*layers\.0, layers\.1") as err:
        load_dictionary(tmp_path)
    assert "hookpoint=" in str(err.value)
    assert load_dictionary(tmp_path, hookpoint="layers.1").hookpoint == "layers.1"
    assert load_dictionary(tmp_path / "layers.0").hookpoint == "layers.0"
    with pytest.raises(AutointerpError, match=r"(?s)no dictionary for hookpoint 'layers\.7'.*layers\.0, layers\.1"):
        load_dictionary(tmp_path, hookpoint="layers.7")


def test_subject_model_turns_base_model_names_into_module_names(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=D_IN,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=32,
    )
    model = transformers.LlamaForCausalLM(cfg)
    write_sparsify(tmp_path / "layers.1", {"k": 4}, sparsify_weights())
    assert load_dictionary(tmp_path / "layers.1", subject_model=model).hookpoint == "model.layers.1"


# ----------------------------------------------------------------------------------------------- Gemma Scope


def gemma_weights(seed=60, d_out=D_IN, lower=False):
    w = {
        "W_enc": rand(D_IN, D_SAE, seed=seed),
        "W_dec": rand(D_SAE, d_out, seed=seed + 1),
        "b_enc": rand(D_SAE, seed=seed + 2, scale=0.3),
        "b_dec": rand(d_out, seed=seed + 3, scale=0.3),
        "threshold": torch.rand(D_SAE, generator=torch.Generator().manual_seed(seed + 4)) * 2,
    }
    return {(k.lower() if lower else k): v for k, v in w.items()}


def gemma_reference(x, w):
    pre = x @ w["W_enc"] + w["b_enc"]
    return (pre > w["threshold"]).float() * torch.relu(pre)


def test_gemma_scope_params_npz(tmp_path):
    w = gemma_weights()
    folder = tmp_path / "layer_3" / "width_16k" / "average_l0_20"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **{k: v.numpy() for k, v in w.items()})
    x = inputs()
    d = load_dictionary(folder)
    torch.testing.assert_close(d.encode(x), gemma_reference(x, w), rtol=1e-5, atol=1e-5)
    assert (d.format, d.hookpoint, d.reads) == ("Gemma Scope", "", "output")
    # the release root holds one dictionary, three folders down: it is found and loaded
    torch.testing.assert_close(load_dictionary(tmp_path).encode(x), d.encode(x))
    # the weights file itself, under any name: recognised from its tensors
    (folder / "params.npz").rename(tmp_path / "renamed.bin")
    torch.testing.assert_close(load_dictionary(tmp_path / "renamed.bin").encode(x), d.encode(x))


def test_gemma_scope_2_safetensors_transcoder_with_config(tmp_path):
    w = gemma_weights(seed=70, d_out=D_OUT, lower=True)
    w["affine_skip_connection"] = rand(D_IN, D_OUT, seed=75)
    write_safetensors(tmp_path / "params.safetensors", w)
    write_json(
        tmp_path / "config.json",
        {
            "architecture": "jump_relu",
            "model_name": "gemma-v3-270m-pt",
            "affine_connection": True,
            "hf_hook_point_in": "model.layers.4.pre_feedforward_layernorm.output",
            "hf_hook_point_out": "model.layers.4.post_feedforward_layernorm.output",
        },
    )
    x = inputs()
    upper = {"W_enc": w["w_enc"], "b_enc": w["b_enc"], "threshold": w["threshold"]}
    latents = gemma_reference(x, upper)
    d = load_dictionary(tmp_path)
    torch.testing.assert_close(d.encode(x), latents, rtol=1e-5, atol=1e-5)
    expected_out = latents @ w["w_dec"] + w["b_dec"] + x @ w["affine_skip_connection"]
    torch.testing.assert_close(d.decode(latents, x), expected_out, rtol=1e-5, atol=1e-5)
    assert (d.hookpoint, d.reads, d.hookpoint_out) == (
        "model.layers.4.pre_feedforward_layernorm",
        "output",
        "model.layers.4.post_feedforward_layernorm",
    )
    assert d.decoder_directions().shape == (D_SAE, D_OUT)


# ----------------------------------------------------------------------------------------------- Llama Scope


def llama_scope_folder(tmp_path, seed=80, **hyper):
    d_model = D_IN
    w = {
        "encoder.weight": rand(D_SAE, d_model, seed=seed),
        "encoder.bias": rand(D_SAE, seed=seed + 1, scale=0.3),
        "decoder.weight": rand(d_model, D_SAE, seed=seed + 2, scale=0.4),
        "decoder.bias": rand(d_model, seed=seed + 3, scale=0.3),
    }
    cfg = {
        "d_model": d_model,
        "expansion_factor": D_SAE / d_model,
        "d_sae": D_SAE,
        "act_fn": "jumprelu",
        "jump_relu_threshold": 0.6,
        "top_k": 50,
        "norm_activation": "dataset-wise",
        "dataset_average_activation_norm": {"in": 7.5, "out": 7.5},
        "sparsity_include_decoder_norm": True,
        "use_decoder_bias": True,
        "apply_decoder_bias_to_pre_encoder": False,
        "use_glu_encoder": False,
        "hook_point_in": "blocks.3.hook_resid_post",
        "hook_point_out": "blocks.3.hook_resid_post",
        **hyper,
    }
    write_json(tmp_path / "hyperparams.json", cfg)
    write_safetensors(tmp_path / "checkpoints" / "final.safetensors", w)
    return w, cfg


def lm_saes_reference(x, w, cfg):
    """Llama Scope's inference path written out: dataset-norm standardisation of the parameters, unit
    decoder columns with their norms moved to the encoder, then the activation on raw inputs."""
    root_d = math.sqrt(cfg["d_model"])
    f_in = root_d / cfg["dataset_average_activation_norm"]["in"]
    f_out = root_d / cfg["dataset_average_activation_norm"]["out"]
    enc_w, enc_b = w["encoder.weight"].clone(), w["encoder.bias"] / f_in
    dec_w, dec_b = w["decoder.weight"] * f_in / f_out, w["decoder.bias"] / f_out
    n = torch.linalg.vector_norm(dec_w, dim=0)
    dec_w, enc_w, enc_b = dec_w / n, enc_w * n[:, None], enc_b * n
    h = torch.nn.functional.linear(x, enc_w, enc_b)
    if cfg["act_fn"] == "jumprelu" or (cfg["act_fn"] == "topk" and cfg["jump_relu_threshold"] > 0):
        acts = h.where(h > cfg["jump_relu_threshold"], torch.zeros(()))
    elif cfg["act_fn"] == "topk":
        acts = top_k_dense(h, h.clamp(min=0), cfg["top_k"])
    else:
        acts = h.clamp(min=0)
    return acts, torch.nn.functional.linear(acts, dec_w, dec_b)


@pytest.mark.parametrize("act_fn, threshold", [("jumprelu", 0.6), ("topk", 0.0), ("topk", 0.6), ("relu", 0.0)])
def test_llama_scope(tmp_path, act_fn, threshold):
    w, cfg = llama_scope_folder(
        tmp_path,
        act_fn=act_fn,
        jump_relu_threshold=threshold,
        top_k=7,
        dataset_average_activation_norm={"in": 7.5, "out": 3.0},
        hook_point_out="blocks.3.hook_mlp_out",
    )
    x = inputs()
    expected, recon = lm_saes_reference(x, w, cfg)
    d = load_dictionary(tmp_path)
    torch.testing.assert_close(d.encode(x), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(d.decode(d.encode(x)), recon, rtol=1e-4, atol=1e-5)
    assert (d.format, d.hookpoint, d.hookpoint_out, d.reads) == (
        "Llama Scope",
        "blocks.3.hook_resid_post",
        "blocks.3.hook_mlp_out",
        "input",
    )
    if act_fn == "topk" and threshold == 0:
        assert ((d.encode(x) != 0).sum(-1) <= 7).all() and d.encode_sparse(x)[0].shape == (3, 5, 7)


def test_llama_scope_reconstruction_is_the_training_reconstruction_in_model_units(tmp_path):
    """With ReLU the standardisation must not change which latents fire, and decoding must give the
    training-space reconstruction divided by the output norm factor."""
    w, cfg = llama_scope_folder(tmp_path, act_fn="relu", dataset_average_activation_norm={"in": 5.0, "out": 2.0})
    x = inputs()
    f_in, f_out = math.sqrt(D_IN) / 5.0, math.sqrt(D_IN) / 2.0
    train_acts = torch.clamp((x * f_in) @ w["encoder.weight"].T + w["encoder.bias"], min=0)
    train_recon = train_acts @ w["decoder.weight"].T + w["decoder.bias"]
    d = load_dictionary(tmp_path)
    assert torch.equal(d.encode(x) > 0, train_acts > 0)
    torch.testing.assert_close(d.decode(d.encode(x)), train_recon / f_out, rtol=1e-4, atol=1e-5)


def test_llama_scope_errors(tmp_path):
    llama_scope_folder(tmp_path, act_fn="gelu")
    with pytest.raises(AutointerpError, match="Unknown activation function act_fn='gelu'"):
        load_dictionary(tmp_path)
    llama_scope_folder(tmp_path, dataset_average_activation_norm=None)
    with pytest.raises(AutointerpError, match="without dataset_average_activation_norm"):
        load_dictionary(tmp_path)
    (tmp_path / "checkpoints" / "final.safetensors").unlink()
    with pytest.raises(AutointerpError, match="(?s)no checkpoint.*checkpoints/final.safetensors"):
        load_dictionary(tmp_path)


# ----------------------------------------------------------------------------------------------- BatchTopK


@pytest.mark.parametrize("dict_class", ["BatchTopKSAE", "MatryoshkaBatchTopKSAE"])
def test_dictionary_learning_batchtopk_uses_the_stored_threshold(tmp_path, dict_class):
    W_enc, b_enc = rand(D_IN, D_SAE, seed=90), rand(D_SAE, seed=91, scale=0.3)
    W_dec, b_dec = rand(D_SAE, D_IN, seed=92), rand(D_IN, seed=93, scale=0.3)
    state = {"k": torch.tensor(6, dtype=torch.int), "threshold": torch.tensor(1.1), "b_dec": b_dec}
    if dict_class == "BatchTopKSAE":
        state.update(
            {"encoder.weight": W_enc.T.contiguous(), "encoder.bias": b_enc, "decoder.weight": W_dec.T.contiguous()}
        )
    else:
        state.update({"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "group_sizes": torch.tensor([8, 32])})
    torch.save(state, tmp_path / "ae.pt")
    write_json(
        tmp_path / "config.json",
        {
            "trainer": {
                "dict_class": dict_class,
                "k": 6,
                "activation_dim": D_IN,
                "dict_size": D_SAE,
                "submodule_name": "resid_post_layer_3",
            }
        },
    )
    x = inputs()
    post_relu = torch.relu((x - b_dec) @ W_enc + b_enc)
    expected = post_relu * (post_relu > 1.1)
    d = load_dictionary(tmp_path)
    torch.testing.assert_close(d.encode(x), expected, rtol=1e-5, atol=1e-5)
    assert 0 < int((expected > 0).sum()) < int((post_relu > 0).sum())
    torch.testing.assert_close(d.decoder_directions(), W_dec)
    state["threshold"] = torch.tensor(-1.0)
    torch.save(state, tmp_path / "ae.pt")
    with pytest.raises(AutointerpError, match="never estimated"):
        load_dictionary(tmp_path)


# ----------------------------------------------------------------------------------------------- common


def test_generic_encode_sparse_and_to(tmp_path):
    w = saelens_weights(seed=95)
    write_saelens(tmp_path, {"architecture": "standard", "apply_b_dec_to_input": False}, w)
    d = load_dictionary(tmp_path)
    x = inputs()
    values, indices = d.encode_sparse(x)
    dense = torch.zeros(3, 5, D_SAE).scatter_(-1, indices, values)
    torch.testing.assert_close(dense, d.encode(x))
    assert values.shape[-1] == int((d.encode(x) > 0).sum(-1).max())
    assert d.to("cpu", torch.float64) is d and d.encode(x).dtype == torch.float64


def test_every_format_lists_the_files_it_read(tmp_path):
    """``files`` is what collect hashes into a result's identity: every config and weights file read."""
    write_saelens(
        tmp_path / "saelens",
        {"architecture": "standard", "normalize_activations": "expected_average_only_in"},
        saelens_weights(),
    )
    write_json(tmp_path / "saelens" / "activation_scaler.json", {"scaling_factor": 2.0})
    write_sparsify(tmp_path / "sparsify" / "layers.1", {"k": 4}, sparsify_weights())
    write_safetensors(tmp_path / "gemma" / "params.safetensors", gemma_weights())
    write_json(tmp_path / "gemma" / "config.json", {"architecture": "jump_relu"})
    llama_scope_folder(tmp_path / "llama")
    (tmp_path / "llama" / "notes.txt").write_text("not read")
    expected = {
        "saelens": ["activation_scaler.json", "cfg.json", "sae_weights.safetensors"],
        "sparsify/layers.1": ["cfg.json", "sae.safetensors"],
        "gemma": ["config.json", "params.safetensors"],
        "llama": ["checkpoints/final.safetensors", "hyperparams.json"],
    }
    for folder, names in expected.items():
        files = load_dictionary(tmp_path / folder).files
        assert sorted(Path(f).relative_to(tmp_path / folder).as_posix() for f in files) == names, folder


def test_check_input_size_names_both_sizes(tmp_path):
    write_saelens(tmp_path, {"architecture": "standard"}, saelens_weights())
    d = load_dictionary(tmp_path)
    check_input_size(d, D_IN)
    with pytest.raises(AutointerpError, match=rf"size {D_IN} but the output of model.layers.5 .*size 64"):
        check_input_size(d, 64, hookpoint="model.layers.5")


def test_format_detection_and_unknown_folders(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    write_json(tmp_path / "cfg.json", {"architecture": "standard"})  # a config without its weights
    with pytest.raises(AutointerpError, match="matches no known dictionary format") as err:
        load_dictionary(tmp_path)
    for looked_for in (
        "sae_weights.safetensors (SAELens)",
        "sae.safetensors (sparsify)",
        "hyperparams.json",
        "params.npz",
        "ae.pt",
    ):
        assert looked_for in str(err.value)
    with pytest.raises(AutointerpError, match="does not exist"):
        load_dictionary(tmp_path / "missing" / "folder")
    # the same folder name holds different formats: detection follows the files
    write_safetensors(tmp_path / "sae.safetensors", sparsify_weights())
    write_json(tmp_path / "cfg.json", {"d_in": D_IN, "k": 3})
    assert load_dictionary(tmp_path).format == "sparsify"
    assert load_dictionary(tmp_path / "cfg.json").format == "sparsify"  # a file of the folder


@pytest.mark.parametrize(
    "case, message",
    [
        ("nan", "NaN or Inf"),
        ("inf_gemma", "NaN or Inf"),
        ("shape", r"W_dec has shape \(40, 13\)"),
        ("missing_tensor", "has no tensor 'b_dec'"),
        ("missing_weights", "lacks sae.safetensors"),
        ("unknown_activation", "Unknown sparsify activation 'gelu'"),
        ("unknown_architecture", "Unknown SAE activation: architecture='crosscoder'"),
        ("saelens_missing_threshold", "has no tensor 'threshold'"),
        ("bad_k", "topk dictionary with k=99"),
    ],
)
def test_bad_dictionaries(tmp_path, case, message):
    w = sparsify_weights()
    cfg = {"k": 4}
    if case == "nan":
        w["encoder.weight"][1, 2] = float("nan")
    elif case == "shape":
        w["W_dec"] = rand(D_SAE, D_IN + 1)
    elif case == "missing_tensor":
        del w["b_dec"]
    elif case == "unknown_activation":
        cfg["activation"] = "gelu"
    elif case == "bad_k":
        cfg["k"] = 99
    if case == "inf_gemma":
        gw = gemma_weights()
        gw["threshold"][0] = float("inf")
        write_safetensors(tmp_path / "params.safetensors", gw)
    elif case in ("unknown_architecture", "saelens_missing_threshold"):
        arch = "crosscoder" if case == "unknown_architecture" else "jumprelu"
        write_saelens(tmp_path, {"architecture": arch}, saelens_weights())
    else:
        write_sparsify(tmp_path, cfg, w)
    if case == "missing_weights":
        (tmp_path / "sae.safetensors").unlink()
        write_json(tmp_path / "cfg.json", {"d_in": D_IN, "k": 4})
        from autointerp.models.dictionaries import sparsify  # the format's own loader names the file

        with pytest.raises(AutointerpError, match=message):
            sparsify.load(tmp_path)
        return
    with pytest.raises(AutointerpError, match=message):
        load_dictionary(tmp_path)


def test_hub_id_offline_says_nothing_could_be_downloaded(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # so the id is surely not a local path
    with pytest.raises(AutointerpError, match="nothing could be downloaded") as err:
        load_dictionary("autointerp-tests/no-such-release/layers.3")
    assert "local path" in str(err.value) and "huggingface-cli download" in str(err.value)
