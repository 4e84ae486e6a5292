"""Dictionaries saved by their own libraries (SAELens, EleutherAI sparsify) encode as those libraries do.

Each test skips, saying why, where the library is not installed (pip install sae-lens eai-sparsify).
"""

from __future__ import annotations

import json

import pytest
import torch

from autointerp.models.dictionaries import load_dictionary

D_IN, D_SAE = 16, 48


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Random values in every parameter (libraries initialise biases and thresholds to zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.3 if ("b_" in name or "bias" in name or name.endswith("r_mag")) else 1.0
            p.copy_(torch.randn(p.shape, generator=g) * scale)
            if "threshold" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 2)


def inputs(n=(3, 7), d=D_IN, seed=1) -> torch.Tensor:
    return torch.randn(*n, d, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.fixture(scope="module")
def sae_lens():
    return pytest.importorskip("sae_lens", reason="SAELens is not installed (pip install sae-lens)")


def _saelens_cases(sl):
    from sae_lens.saes import (
        AbsTopKSAE,
        AbsTopKSAEConfig,
        GatedSAE,
        GatedSAEConfig,
        JumpReLUSAE,
        JumpReLUSAEConfig,
        JumpReLUSkipTranscoder,
        JumpReLUSkipTranscoderConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )
    from sae_lens.saes.sae import SAEMetadata

    meta = {"hook_name": "blocks.2.hook_resid_post"}
    return {
        "standard": lambda: StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, metadata=SAEMetadata(**meta))),
        "standard_no_b_dec": lambda: StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, apply_b_dec_to_input=False)),
        "topk": lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=6)),
        "topk_rescaled": lambda: TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=6, rescale_acts_by_decoder_norm=True)),
        "jumprelu": lambda: JumpReLUSAE(JumpReLUSAEConfig(d_in=D_IN, d_sae=D_SAE)),
        "gated": lambda: GatedSAE(GatedSAEConfig(d_in=D_IN, d_sae=D_SAE)),
        "abstopk": lambda: AbsTopKSAE(AbsTopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5)),
        "jumprelu_skip_transcoder": lambda: JumpReLUSkipTranscoder(
            JumpReLUSkipTranscoderConfig(d_in=D_IN, d_sae=D_SAE, d_out=D_IN + 4, apply_b_dec_to_input=False)
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "standard",
        "standard_no_b_dec",
        "topk",
        "topk_rescaled",
        "jumprelu",
        "gated",
        "abstopk",
        "jumprelu_skip_transcoder",
    ],
)
def test_saelens_saved_saes_encode_like_saelens(tmp_path, sae_lens, case):
    sae = _saelens_cases(sae_lens)[case]()
    randomize(sae, seed=len(case))
    sae.save_model(tmp_path)
    x = inputs()
    d = load_dictionary(tmp_path)
    with torch.no_grad():
        expected = sae.encode(x)
    torch.testing.assert_close(d.encode(x), expected, rtol=1e-4, atol=1e-4)
    assert (d.d_in, d.d_sae, d.signed) == (D_IN, D_SAE, case == "abstopk")
    if case == "abstopk":
        assert (expected < 0).any() and ((d.encode(x) != 0).sum(-1) == 5).all()
    if case == "jumprelu_skip_transcoder":
        assert d.reads == "input" and d.decoder_directions().shape == (D_SAE, D_IN + 4)
        with torch.no_grad():
            torch.testing.assert_close(
                d.decode(d.encode(x), x), sae.decode(sae.encode(x)) + x @ sae.W_skip.T, rtol=1e-4, atol=1e-4
            )
    else:  # decoding what we encode reconstructs like SAELens (decoder directions in the same units)
        with torch.no_grad():
            torch.testing.assert_close(d.decode(d.encode(x)), sae.decode(expected), rtol=1e-4, atol=1e-4)
    if case == "standard":
        assert d.hookpoint == "blocks.2.hook_resid_post"


def test_saelens_expected_average_only_in_uses_the_stored_factor(tmp_path, sae_lens):
    from sae_lens.saes import StandardSAE, StandardSAEConfig
    from sae_lens.training.activation_scaler import ActivationScaler

    sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE, normalize_activations="expected_average_only_in"))
    randomize(sae, seed=3)
    sae.save_model(tmp_path)
    factor = 0.37
    ActivationScaler(scaling_factor=factor).save(str(tmp_path / "activation_scaler.json"))
    x = inputs()
    d = load_dictionary(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(d.encode(x), sae.encode(x * factor), rtol=1e-4, atol=1e-4)
        sae.fold_activation_norm_scaling_factor(factor)  # SAELens' own fold gives the same encoder
        torch.testing.assert_close(d.encode(x), sae.encode(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(d.decoder_directions(), sae.W_dec, rtol=1e-5, atol=1e-6)


def test_saelens_batchtopk_checkpoint_encodes_like_its_inference_conversion(tmp_path, sae_lens):
    from sae_lens.saes import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

    sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=4))
    randomize(sae, seed=5)
    sae.topk_threshold = torch.tensor(1.5)
    sae.save_model(tmp_path / "checkpoint")  # training layout: architecture batchtopk + topk_threshold
    sae.save_inference_model(tmp_path / "inference")  # SAELens' conversion: a JumpReLU SAE
    assert json.loads((tmp_path / "checkpoint" / "cfg.json").read_text())["architecture"] == "batchtopk"
    reference = sae_lens.SAE.load_from_disk(tmp_path / "inference")
    x = inputs()
    with torch.no_grad():
        expected = reference.encode(x)
    assert 0 < int((expected > 0).sum()) < expected.numel()
    for folder in ("checkpoint", "inference"):
        torch.testing.assert_close(load_dictionary(tmp_path / folder).encode(x), expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def sparsify():
    return pytest.importorskip("sparsify", reason="EleutherAI sparsify is not installed (pip install eai-sparsify)")


@pytest.mark.parametrize("kind", ["sae", "transcoder_skip", "groupmax"])
def test_sparsify_saved_coders_encode_like_sparsify(tmp_path, sparsify, kind):
    cfg = sparsify.SparseCoderConfig(
        num_latents=D_SAE,
        k=6,
        transcode=kind == "transcoder_skip",
        skip_connection=kind == "transcoder_skip",
        activation="groupmax" if kind == "groupmax" else "topk",
    )
    coder = sparsify.SparseCoder(D_IN, cfg)
    randomize(coder, seed=7)
    coder.save_to_disk(tmp_path / "layers.1.mlp")
    x = inputs(n=(20,))  # sparsify's encoder works on [tokens, d_in]
    d = load_dictionary(tmp_path / "layers.1.mlp")
    with torch.no_grad():
        out = coder.encode(x)
        expected = torch.zeros(20, D_SAE).scatter_(-1, out.top_indices, out.top_acts)
        recon = coder.decode(out.top_acts, out.top_indices)
        if coder.W_skip is not None:
            recon = recon + x @ coder.W_skip.mT
    torch.testing.assert_close(d.encode(x), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(d.decode(d.encode(x), x), recon, rtol=1e-4, atol=1e-4)
    values, indices = d.encode_sparse(x)
    assert values.shape == (20, 6) == indices.shape
    assert d.hookpoint == "layers.1.mlp" and d.reads == ("input" if kind == "transcoder_skip" else "output")
