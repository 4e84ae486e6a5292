"""Llama Scope (OpenMOSS Language-Model-SAEs, the release layout): ``hyperparams.json`` + a checkpoint.

Source: OpenMOSS/Language-Model-SAEs ``src/lm_saes/sae.py`` and ``config.py`` of the Llama Scope era
(``SparseAutoEncoder.from_config``, ``standardize_parameters_of_dataset_activation_scaling``,
``transform_to_unit_decoder_norm``, ``activation_function_factory``); SAELens' ``llama_scope`` loader
for file names. What is read:

- ``hyperparams.json``: ``d_model``, ``act_fn`` ('relu', 'jumprelu' or 'topk'), ``jump_relu_threshold``,
  ``top_k``, ``norm_activation`` ('dataset-wise' or 'inference'), ``dataset_average_activation_norm``
  (``{"in": .., "out": ..}``), ``sparsity_include_decoder_norm`` (default true),
  ``use_decoder_bias`` (default true), ``apply_decoder_bias_to_pre_encoder`` (default true),
  ``use_glu_encoder`` (must be false), ``hook_point_in``, ``hook_point_out``.
- The checkpoint, first found of ``sae_weights.safetensors``, ``checkpoints/pruned.safetensors``,
  ``checkpoints/final.safetensors`` (the order lm_saes searches): ``encoder.weight`` [d_sae, d_model],
  ``encoder.bias`` [d_sae], ``decoder.weight`` [d_model, d_sae], ``decoder.bias`` [d_model].

Loading applies what lm_saes applies before inference, so that raw model activations go in:
1. dataset-wise norm (f_in = sqrt(d_model) / norm_in, f_out = sqrt(d_model) / norm_out):
   encoder.bias /= f_in, decoder.bias /= f_out, decoder.weight *= f_in / f_out;
2. if sparsity_include_decoder_norm: decoder columns to unit norm, the norms folded into the encoder;
3. a 'topk' SAE with jump_relu_threshold > 0 becomes a JumpReLU at that threshold (as lm_saes does).
Then latents = pre where pre > jump_relu_threshold (JumpReLU), relu(pre), or the top_k of relu(pre),
with pre = (x - decoder.bias if apply_decoder_bias_to_pre_encoder) @ encoder.weight.T + encoder.bias.
A transcoder (hook_point_in != hook_point_out) reads the MLP's input.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ...errors import AutointerpError
from .base import check_tensors, require
from .files import load_tensors, read_json
from .linear import LinearDictionary

CONFIG_FILE = "hyperparams.json"
CHECKPOINTS = ("sae_weights.safetensors", "checkpoints/pruned.safetensors", "checkpoints/final.safetensors")
LAYOUT = "Llama Scope"


def checkpoint(folder: Path) -> Path:
    for name in CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    raise AutointerpError(
        f"The Llama Scope folder {folder} has {CONFIG_FILE} but no checkpoint.", f"one of {', '.join(CHECKPOINTS)}."
    )


def _norm_factors(cfg: dict, d_model: int, where: Path) -> tuple[float, float]:
    mode = cfg.get("norm_activation", "dataset-wise")
    if mode == "inference":
        return 1.0, 1.0
    if mode != "dataset-wise":
        raise AutointerpError(
            f"norm_activation={mode!r} in {where} is not supported.",
            "norm_activation 'dataset-wise' (with dataset_average_activation_norm) or 'inference'.",
        )
    norms = cfg.get("dataset_average_activation_norm") or {}
    try:
        n_in, n_out = float(norms["in"]), float(norms["out"])
    except (KeyError, TypeError, ValueError):
        raise AutointerpError(
            f"{where} has norm_activation 'dataset-wise' without dataset_average_activation_norm.",
            'dataset_average_activation_norm: {"in": <float>, "out": <float>}.',
        ) from None
    if not (n_in > 0 and n_out > 0 and math.isfinite(n_in) and math.isfinite(n_out)):
        raise AutointerpError(f"dataset_average_activation_norm {norms} in {where}.", "positive finite norms.")
    return math.sqrt(d_model) / n_in, math.sqrt(d_model) / n_out


def load(path: str | Path) -> LinearDictionary:
    folder = Path(path)
    where = folder / CONFIG_FILE
    cfg = read_json(where)
    file = checkpoint(folder)
    source = str(file)
    w = {name: t.float() for name, t in load_tensors(file).items()}
    use_bias = bool(cfg.get("use_decoder_bias", True))
    require(
        source,
        w,
        ("encoder.weight", "encoder.bias", "decoder.weight") + (("decoder.bias",) if use_bias else ()),
        "encoder.weight, encoder.bias, decoder.weight, decoder.bias (lm_saes SparseAutoEncoder).",
    )
    if cfg.get("use_glu_encoder"):
        raise AutointerpError(f"{where} sets use_glu_encoder, which is not supported.", "use_glu_encoder false.")
    d_sae, d_model = w["encoder.weight"].shape
    if "d_model" in cfg and int(cfg["d_model"]) != d_model:
        raise AutointerpError(
            f"{where} says d_model={cfg['d_model']} but encoder.weight has shape {tuple(w['encoder.weight'].shape)}.",
            "the same d_model in both.",
        )
    check_tensors(source, w, {"encoder.bias": (d_sae,), "decoder.weight": (d_model, d_sae), "decoder.bias": (d_model,)})

    act_fn = str(cfg.get("act_fn", "relu")).lower()
    threshold = float(cfg.get("jump_relu_threshold", 0.0) or 0.0)
    if act_fn == "topk" and threshold > 0:
        act_fn = "jumprelu"
    if threshold < 0 or not math.isfinite(threshold):
        raise AutointerpError(f"jump_relu_threshold={threshold} in {where}.", "a finite threshold >= 0.")
    if act_fn not in ("relu", "jumprelu", "topk"):
        raise AutointerpError(
            f"Unknown activation function act_fn={act_fn!r} in {where}.", "act_fn 'relu', 'jumprelu' or 'topk'."
        )

    f_in, f_out = _norm_factors(cfg, d_model, where)
    W_enc = w["encoder.weight"]  # [d_sae, d_model] until the end
    b_enc = w["encoder.bias"] / f_in
    W_dec = w["decoder.weight"] * (f_in / f_out)  # [d_model, d_sae]
    b_dec = w["decoder.bias"] / f_out if use_bias else torch.zeros(d_model)
    if cfg.get("sparsity_include_decoder_norm", True):
        norms = W_dec.norm(dim=0)
        W_dec, W_enc, b_enc = W_dec / norms, W_enc * norms[:, None], b_enc * norms

    hook_in = cfg.get("hook_point_in", "")
    hook_out = cfg.get("hook_point_out", hook_in) or hook_in
    return LinearDictionary(
        W_enc=W_enc.T.contiguous(),
        b_enc=b_enc,
        W_dec=W_dec.T.contiguous(),
        b_dec=b_dec,
        activation=act_fn,
        k=int(cfg.get("top_k", 0)) if act_fn == "topk" else 0,
        threshold=torch.tensor(threshold) if act_fn == "jumprelu" else None,
        input_bias=b_dec if use_bias and cfg.get("apply_decoder_bias_to_pre_encoder", True) else None,
        hookpoint=hook_in,
        hookpoint_out=hook_out if hook_out != hook_in else "",
        reads="input" if hook_out != hook_in else "output",
        format=LAYOUT,
        source=str(folder),
        files=(where, file),
    )
