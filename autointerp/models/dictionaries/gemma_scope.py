"""Gemma Scope JumpReLU SAEs and transcoders (google-deepmind): ``params.npz`` or ``params.safetensors``.

Sources: the Gemma Scope tutorial's JumpReLUSAE (``pre = x @ W_enc + b_enc``, ``relu(pre) * (pre >
threshold)``, no input centring) and SAELens' ``gemma_2_sae_huggingface_loader`` /
``gemma_3_sae_huggingface_loader`` (file and key names). What is read:

- Gemma Scope (Gemma 2): ``params.npz`` with ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_out],
  ``b_enc`` [d_sae], ``b_dec`` [d_out], ``threshold`` [d_sae] (keys may be lower case, ``w_enc``).
  The files do not name the hookpoint (the release's folder names do, which we never parse).
- Gemma Scope 2 (Gemma 3): ``params.safetensors`` with ``w_enc``, ``w_dec``, ``b_enc``, ``b_dec``,
  ``threshold`` and, for affine transcoders, ``affine_skip_connection`` [d_in, d_out]; an optional
  ``config.json`` with ``architecture`` ('jump_relu'), ``hf_hook_point_in`` (e.g.
  ``model.layers.12.output``: the module and the side read) and ``hf_hook_point_out`` (transcoders).

A path to the weights file itself is accepted too; its tensors, not its name, identify it.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import AutointerpError
from .base import check_tensors, require
from .files import load_tensors, read_json
from .hooks import split_hf_hook
from .linear import LinearDictionary

WEIGHT_FILES = ("params.npz", "params.safetensors")
CONFIG_FILE = "config.json"
LAYOUT = "Gemma Scope"
KEYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


def weights_file(folder: Path) -> Path | None:
    return next((folder / n for n in WEIGHT_FILES if (folder / n).is_file()), None)


def looks_like_gemma_scope(names: list[str]) -> bool:
    lower = {n.lower() for n in names}
    return {k.lower() for k in KEYS} <= lower


def load(path: str | Path) -> LinearDictionary:
    path = Path(path)
    if path.is_dir():
        file = weights_file(path)
        if file is None:
            raise AutointerpError(
                f"The Gemma Scope folder {path} lacks {' or '.join(WEIGHT_FILES)}.",
                f"{' or '.join(WEIGHT_FILES)} (the files Gemma Scope releases).",
            )
        folder = path
    else:
        file, folder = path, path.parent
    source = str(file)
    raw = load_tensors(file)
    w = {}
    for name, tensor in raw.items():  # Gemma Scope 2 writes w_enc / w_dec
        canonical = next((k for k in KEYS if k.lower() == name.lower()), name)
        w[canonical] = tensor.float()
    require(source, w, KEYS, "W_enc, W_dec, b_enc, b_dec, threshold (Gemma Scope's JumpReLU parameters).")
    d_in, d_sae = w["W_enc"].shape
    d_out = w["W_dec"].shape[-1]
    check_tensors(
        source,
        w,
        {
            "W_dec": (d_sae, d_out),
            "b_enc": (d_sae,),
            "b_dec": (d_out,),
            "threshold": (d_sae,),
            "affine_skip_connection": (d_in, d_out),
        },
    )

    config_file = folder / CONFIG_FILE if path.is_dir() and (folder / CONFIG_FILE).is_file() else None
    cfg = read_json(config_file) if config_file else {}
    if cfg.get("architecture", "jump_relu") != "jump_relu":
        raise AutointerpError(
            f"Unknown Gemma Scope architecture {cfg['architecture']!r} in {folder / CONFIG_FILE}.",
            "architecture 'jump_relu'.",
        )
    hookpoint, reads = split_hf_hook(cfg["hf_hook_point_in"]) if cfg.get("hf_hook_point_in") else ("", "output")
    hookpoint_out = split_hf_hook(cfg["hf_hook_point_out"])[0] if cfg.get("hf_hook_point_out") else ""
    skip = w.get("affine_skip_connection")
    return LinearDictionary(
        W_enc=w["W_enc"],
        b_enc=w["b_enc"],
        W_dec=w["W_dec"],
        b_dec=w["b_dec"],
        activation="jumprelu",
        threshold=w["threshold"],
        W_skip=skip,
        hookpoint=hookpoint,
        hookpoint_out=hookpoint_out,
        reads=reads,
        format=LAYOUT,
        source=str(path),
        files=(file,) + ((config_file,) if config_file else ()),
    )
