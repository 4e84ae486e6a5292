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

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Sae":
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
    """Load an SAE folder in SAELens format, checking shapes and finite weights."""
    folder = Path(path)
    if not folder.is_dir():
        raise AutointerpError(f"The SAE folder {folder} does not exist.",
                              f"a folder with {CONFIG_FILE} and {WEIGHTS_FILE} (SAELens format).",
                              "pass the folder that holds cfg.json with --sae.")
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / f).exists()]
    if missing:
        raise AutointerpError(f"The SAE folder {folder} lacks {', '.join(missing)}.",
                              f"{CONFIG_FILE} and {WEIGHTS_FILE} (the layout SAELens saves).")
    from safetensors.torch import load_file

    cfg = json.loads((folder / CONFIG_FILE).read_text())
    weights = load_file(str(folder / WEIGHTS_FILE))
    activation, k = _activation_of(cfg)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec") + (("threshold",) if activation == "jumprelu" else ()):
        if name not in weights:
            raise AutointerpError(f"{folder / WEIGHTS_FILE} has no tensor {name!r}.",
                                  "W_enc, b_enc, W_dec, b_dec (and threshold for JumpReLU).",
                                  f"tensors present: {', '.join(sorted(weights))}")
    w = {name: t.float() for name, t in weights.items()}
    d_in, d_sae = w["W_enc"].shape
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,),
                "threshold": (d_sae,)}
    for name, shape in expected.items():
        if name in w and tuple(w[name].shape) != shape:
            raise AutointerpError(f"{name} has shape {tuple(w[name].shape)} in {folder}.",
                                  f"{shape} given W_enc's shape {(d_in, d_sae)}.")
        if name in w and not torch.isfinite(w[name]).all():
            raise AutointerpError(f"{name} in {folder} contains NaN or Inf values.", "finite weights.")
    if activation == "topk" and not 0 < k <= d_sae:
        raise AutointerpError(f"TopK SAE with k={k} and {d_sae} latents.", f"1 <= k <= {d_sae}.")
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm != "none":
        raise AutointerpError(f"normalize_activations={norm!r} in {folder / CONFIG_FILE} is not supported yet.",
                              "normalize_activations='none'.")
    hook = cfg.get("hook_name") or (cfg.get("metadata") or {}).get("hook_name", "")
    return Sae(W_enc=w["W_enc"], b_enc=w["b_enc"], W_dec=w["W_dec"], b_dec=w["b_dec"],
               activation=activation, k=k, threshold=w.get("threshold"),
               apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", False)), hook_name=hook)


def _activation_of(cfg: dict) -> tuple[str, int]:
    arch = cfg.get("architecture", "standard")
    fn = cfg.get("activation_fn_str") or cfg.get("activation_fn") or ""
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch == "topk" or fn == "topk":
        k = cfg.get("k", kwargs.get("k"))
        if k is None:
            raise AutointerpError("A TopK SAE config without k.", "a 'k' field (or activation_fn_kwargs.k).")
        return "topk", int(k)
    if arch == "jumprelu":
        return "jumprelu", 0
    if arch == "standard" and fn in ("", "relu"):
        return "relu", 0
    raise AutointerpError(f"Unknown SAE activation: architecture={arch!r}, activation_fn={fn!r}.",
                          "architecture standard (ReLU), topk or jumprelu.")


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
    cfg = {"architecture": arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": sae.apply_b_dec_to_input, "normalize_activations": "none",
           "metadata": {"hook_name": sae.hook_name}}
    if sae.activation == "topk":
        cfg["k"] = sae.k
    cfg.update(extra_cfg or {})
    (folder / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")


def fraction_of_variance_unexplained(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over a batch [n, d]."""
    resid = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return float(resid / total) if total > 0 else math.nan
