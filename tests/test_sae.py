"""SAELens-format SAEs: load what SAELens writes and encode like a direct computation of the formula."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from autointerp.errors import AutointerpError
from autointerp.models.dictionaries import LinearDictionary
from autointerp.models.dictionaries.saelens import load_saelens

D_IN, D_SAE = 16, 40


def write_folder(path, cfg: dict, tensors: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "sae_weights.safetensors"))


def weights(seed=0, threshold=False) -> dict:
    g = torch.Generator().manual_seed(seed)
    w = {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, D_IN, generator=g),
        "b_dec": torch.randn(D_IN, generator=g) * 0.1,
    }
    if threshold:
        w["threshold"] = torch.rand(D_SAE, generator=g)
    return w


def inputs() -> torch.Tensor:
    return torch.randn(3, 7, D_IN, generator=torch.Generator().manual_seed(1)) * 2


@pytest.mark.parametrize("layout", ["v6", "v5"])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_relu(tmp_path, layout, apply_b_dec):
    w = weights()
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "apply_b_dec_to_input": apply_b_dec}
    cfg.update(
        {"architecture": "standard"}
        if layout == "v6"
        else {"activation_fn_str": "relu", "hook_name": "blocks.3.hook_resid_post"}
    )
    write_folder(tmp_path, cfg, w)
    x = inputs()
    centred = x - w["b_dec"] if apply_b_dec else x
    expected = torch.clamp(torch.einsum("btd,dl->btl", centred, w["W_enc"]) + w["b_enc"], min=0)
    torch.testing.assert_close(load_saelens(tmp_path).encode(x), expected)


@pytest.mark.parametrize("layout", ["v6", "v5"])
def test_topk_keeps_the_k_largest_non_negative(tmp_path, layout):
    w = weights()
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "apply_b_dec_to_input": True}
    cfg.update(
        {"architecture": "topk", "k": 5}
        if layout == "v6"
        else {"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 5}}
    )
    write_folder(tmp_path, cfg, w)
    x = inputs()
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    expected = torch.zeros_like(pre)
    for b in range(pre.shape[0]):
        for t in range(pre.shape[1]):
            ranked = sorted(range(D_SAE), key=lambda i: -float(pre[b, t, i]))[:5]
            for i in ranked:
                expected[b, t, i] = max(float(pre[b, t, i]), 0.0)
    got = load_saelens(tmp_path).encode(x)
    torch.testing.assert_close(got, expected)
    assert ((got > 0).sum(-1) <= 5).all()


def test_jumprelu_uses_the_threshold(tmp_path):
    w = weights(threshold=True)
    write_folder(tmp_path, {"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE}, w)
    x = inputs()
    pre = x @ w["W_enc"] + w["b_enc"]
    expected = torch.where(pre > w["threshold"], pre, torch.zeros(()))
    got = load_saelens(tmp_path).encode(x)
    torch.testing.assert_close(got, expected)
    assert (got[(got > 0)] > 0).all() and int((got > 0).sum()) < int((pre > 0).sum())


def test_hook_name_is_read_from_either_layout(tmp_path):
    write_folder(tmp_path / "a", {"architecture": "standard", "metadata": {"hook_name": "model.layers.3"}}, weights())
    write_folder(tmp_path / "b", {"activation_fn_str": "relu", "hook_name": "model.layers.4"}, weights())
    assert load_saelens(tmp_path / "a").hookpoint == "model.layers.3"
    assert load_saelens(tmp_path / "b").hookpoint == "model.layers.4"


@pytest.mark.parametrize(
    "case, message",
    [
        ("nan", "NaN or Inf"),
        ("shape", "shape"),
        ("activation", "Unknown SAE activation"),
        ("missing_tensor", "no tensor 'b_dec'"),
        ("missing_file", "lacks sae_weights.safetensors"),
        ("jumprelu_without_threshold", "no tensor 'threshold'"),
        ("topk_without_k", "without k"),
    ],
)
def test_bad_sae_folders(tmp_path, case, message):
    w = weights()
    cfg = {"architecture": "standard"}
    if case == "nan":
        w["W_enc"][0, 0] = float("nan")
    elif case == "shape":
        w["W_dec"] = torch.randn(D_SAE, D_IN + 1)
    elif case == "activation":
        cfg = {"architecture": "standard", "activation_fn_str": "gelu"}
    elif case == "missing_tensor":
        del w["b_dec"]
    elif case == "jumprelu_without_threshold":
        cfg = {"architecture": "jumprelu"}
    elif case == "topk_without_k":
        cfg = {"architecture": "topk"}
    write_folder(tmp_path, cfg, w)
    if case == "missing_file":
        (tmp_path / "sae_weights.safetensors").unlink()
    with pytest.raises(AutointerpError, match=message):
        load_saelens(tmp_path)


def test_the_embedded_sae_saves_back_byte_for_byte(tmp_path):
    from autointerp.models.dictionaries.saelens import save_saelens
    from autointerp.models.embedded import DEFAULT_SAE_DIR

    sae = load_saelens(DEFAULT_SAE_DIR)
    assert (sae.activation, sae.k, sae.hookpoint) == ("topk", 32, "model.layers.14") and sae.input_bias is not None
    cfg = json.loads((DEFAULT_SAE_DIR / "cfg.json").read_text())
    save_saelens(sae, tmp_path, {key: cfg[key] for key in ("model_name", "training")})
    for name in ("cfg.json", "sae_weights.safetensors"):
        assert (tmp_path / name).read_bytes() == (DEFAULT_SAE_DIR / name).read_bytes(), name


def test_save_saelens_refuses_what_the_layout_cannot_say(tmp_path):
    from autointerp.models.dictionaries.saelens import save_saelens

    w = weights()
    sae = LinearDictionary(**w, activation="abstopk", k=3)
    with pytest.raises(AutointerpError, match="cannot write"):
        save_saelens(sae, tmp_path)
    with pytest.raises(AutointerpError, match="input bias other than b_dec"):
        save_saelens(LinearDictionary(**w, activation="relu", input_bias=torch.ones(D_IN)), tmp_path)
    assert not (tmp_path / "cfg.json").exists()
