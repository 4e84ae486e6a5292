"""EleutherAI sparsify (PyPI ``eai-sparsify``): a folder per hookpoint with ``cfg.json`` + ``sae.safetensors``.

Source: EleutherAI/sparsify ``sparsify/sparse_coder.py``, ``config.py``, ``fused_encoder.py`` (1.3.3).
What is read:

- ``cfg.json``: ``d_in``, ``activation`` ('topk', the default, or 'groupmax'), ``k``, ``transcode``
  (the encoder reads the module's input and the decoder predicts its output), ``skip_connection``.
- ``sae.safetensors``: ``encoder.weight`` [d_sae, d_in], ``encoder.bias`` [d_sae], ``W_dec`` [d_sae, d_in],
  ``b_dec`` [d_in], and ``W_skip`` [d_in, d_in] for transcoders with a skip connection.
- Encoding: ``relu((x - b_dec) @ encoder.weight.T + encoder.bias)`` (no ``- b_dec`` for a transcoder),
  then the k largest (TopK) or the largest of each of k equal groups (GroupMax).
- The hookpoint is the folder's name, as sparsify names it: a module of ``model.base_model``
  (``layers.3`` for ``model.layers.3`` of a Llama, ``h.3`` for ``transformer.h.3`` of GPT-2);
  ``load_dictionary(..., subject_model=...)`` resolves it to the full module name.

A release folder holds one such folder per hookpoint; ``load_dictionary`` lists them.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import AutointerpError
from .base import check_tensors, require
from .files import load_tensors, read_json, require_files
from .linear import LinearDictionary

CONFIG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
LAYOUT = "sparsify"


def load(path: str | Path) -> LinearDictionary:
    folder = Path(path)
    require_files(folder, (CONFIG_FILE, WEIGHTS_FILE), LAYOUT)
    cfg = read_json(folder / CONFIG_FILE)
    source = str(folder / WEIGHTS_FILE)
    w = {name: t.float() for name, t in load_tensors(folder / WEIGHTS_FILE).items()}
    require(
        source,
        w,
        ("encoder.weight", "encoder.bias", "W_dec", "b_dec"),
        "encoder.weight, encoder.bias, W_dec, b_dec (the tensors sparsify's SparseCoder saves).",
    )
    d_sae, d_in = w["encoder.weight"].shape
    if "d_in" in cfg and int(cfg["d_in"]) != d_in:
        raise AutointerpError(
            f"cfg.json says d_in={cfg['d_in']} but encoder.weight has shape "
            f"{tuple(w['encoder.weight'].shape)} in {folder}.",
            "the same input size in both.",
        )
    check_tensors(
        source, w, {"encoder.bias": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,), "W_skip": (d_in, d_in)}
    )
    activation = cfg.get("activation", "topk")
    if activation not in ("topk", "groupmax"):
        raise AutointerpError(
            f"Unknown sparsify activation {activation!r} in {folder / CONFIG_FILE}.", "activation 'topk' or 'groupmax'."
        )
    if "k" not in cfg:
        raise AutointerpError(f"{folder / CONFIG_FILE} has no k.", "the number of active latents, 'k'.")
    transcode = bool(cfg.get("transcode", False))
    return LinearDictionary(
        W_enc=w["encoder.weight"].T.contiguous(),
        b_enc=w["encoder.bias"],
        W_dec=w["W_dec"],
        b_dec=w["b_dec"],
        activation=activation,
        k=int(cfg["k"]),
        input_bias=None if transcode else w["b_dec"],
        W_skip=w["W_skip"].T.contiguous() if "W_skip" in w else None,
        hookpoint=folder.name,
        reads="input" if transcode else "output",
        format=LAYOUT,
        source=str(folder),
        files=(folder / CONFIG_FILE, folder / WEIGHTS_FILE),
    )
