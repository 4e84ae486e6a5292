"""Sparse autoencoders in the on-disk format that SAELens writes.

A folder holds ``cfg.json`` and ``sae_weights.safetensors`` with ``W_enc`` [d_in, d_sae], ``b_enc``
[d_sae], ``W_dec`` [d_sae, d_in], ``b_dec`` [d_in] and, for JumpReLU, ``threshold`` [d_sae]. Both the
SAELens 6 layout (``architecture``, ``k``, ``metadata.hook_name``) and the older one
(``activation_fn_str``, ``activation_fn_kwargs``, ``hook_name``) are read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AutointerpError

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"
ACTIVATIONS = ("relu", "topk", "jumprelu")


@dataclass
class Sae:
    """Encoder and decoder of an SAE. ``encode`` maps [..., d_in] to [..., d_sae]."""

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    activation: str = "relu"
    k: int = 0
    threshold: torch.Tensor | None = None
    apply_b_dec_to_input: bool = False
    hook_name: str = ""

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Sae:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device=device, dtype=dtype))
        return self

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activations(x)
        if self.activation == "relu":
            return torch.relu(pre)
        if self.activation == "topk":
            top = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))
        if self.activation == "jumprelu":
            return pre * (pre > self.threshold)
        raise AssertionError(self.activation)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents @ self.W_dec + self.b_dec


def load_saelens(path: str | Path) -> Sae:
    """Load an SAE folder in SAELens format, checking shapes and finite weights.

    Reads standard (ReLU), TopK and JumpReLU SAEs through the SAELens loader of
    ``autointerp.models.dictionaries`` (which also folds decoder-norm rescaling and a stored
    'expected_average_only_in' scaling factor into the weights); a missing ``apply_b_dec_to_input`` reads
    as False here. Gated, AbsTopK and transcoder folders load with ``load_dictionary`` instead.
    """
    from .dictionaries import saelens

    folder = Path(path)
    if not folder.is_dir():
        raise AutointerpError(
            f"The SAE folder {folder} does not exist.",
            f"a folder with {CONFIG_FILE} and {WEIGHTS_FILE} (SAELens format).",
            "pass the folder that holds cfg.json with --sae.",
        )
    d = saelens.load(folder, default_apply_b_dec=False)
    if d.activation not in ACTIVATIONS or d.reads != "output" or d.W_skip is not None:
        raise AutointerpError(
            f"{folder} holds a {d.activation} {'transcoder' if d.reads == 'input' else 'SAE'}, "
            "which load_saelens does not represent.",
            "a standard (ReLU), TopK or JumpReLU SAE.",
            "load it with autointerp.models.dictionaries.load_dictionary.",
        )
    return Sae(
        W_enc=d.W_enc,
        b_enc=d.b_enc,
        W_dec=d.W_dec,
        b_dec=d.b_dec,
        activation=d.activation,
        k=d.k,
        threshold=d.threshold,
        apply_b_dec_to_input=d.input_bias is not None,
        hook_name=d.hookpoint,
    )


def save_saelens(sae: Sae, path: str | Path, extra_cfg: dict | None = None) -> None:
    """Write ``sae`` in SAELens 6 layout (float32 weights)."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}
    if sae.threshold is not None:
        tensors["threshold"] = sae.threshold
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE))
    arch = {"relu": "standard"}.get(sae.activation, sae.activation)
    cfg = {
        "architecture": arch,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        "normalize_activations": "none",
        "metadata": {"hook_name": sae.hook_name},
    }
    if sae.activation == "topk":
        cfg["k"] = sae.k
    cfg.update(extra_cfg or {})
    (folder / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")


def fraction_of_variance_unexplained(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over a batch [n, d]."""
    resid = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return float(resid / total) if total > 0 else math.nan
