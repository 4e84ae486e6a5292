"""Reading the files dictionaries come in: JSON configs, safetensors, numpy .npz and torch state dicts."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch

from ...errors import AutointerpError


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AutointerpError(f"Cannot read {path}: {exc}.", "a JSON object.") from exc
    if not isinstance(value, dict):
        raise AutointerpError(f"{path} holds a JSON {type(value).__name__}.", "a JSON object.")
    return value


def require_files(folder: Path, names: tuple[str, ...], layout: str) -> None:
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise AutointerpError(
            f"The {layout} folder {folder} lacks {', '.join(missing)}.",
            f"{' and '.join(names)} (the layout {layout} saves).",
        )


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors, .npz or torch state-dict file, on the CPU, as stored (no dtype change)."""
    kind = file_kind(path)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if kind == "npz":
            import numpy as np

            with np.load(path) as data:
                return {name: torch.from_numpy(data[name].copy()) for name in data.files}
        state = torch.load(path, map_location="cpu", weights_only=True)
    except AutointerpError:
        raise
    except Exception as exc:  # a damaged file: say which one and why
        raise AutointerpError(
            f"Cannot read the weights file {path}: {type(exc).__name__}: {exc}.",
            "a complete safetensors, .npz or torch state-dict file.",
        ) from exc
    if isinstance(state, dict) and "sae" in state and isinstance(state["sae"], dict):
        state = state["sae"]  # Language-Model-SAEs' .pt checkpoints wrap the state dict
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AutointerpError(f"{path} does not hold a state dict of tensors.", "a dict of tensor name -> tensor.")
    return dict(state)


def tensor_names(path: Path) -> list[str]:
    """Names of the tensors in a weights file, without reading the tensors where the format allows."""
    kind = file_kind(path)
    if kind == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            return list(fh.keys())
    if kind == "npz":
        with zipfile.ZipFile(path) as zf:
            return [n[:-4] if n.endswith(".npy") else n for n in zf.namelist()]
    return list(load_tensors(path))


def file_kind(path: Path) -> str:
    """'safetensors', 'npz' or 'torch', from the file's first bytes (never its name)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise AutointerpError(f"Cannot read {path}: {exc}.") from exc
    if head[:2] == b"PK":
        # numpy's .npz and torch.save's zip format are both zip files: tell them apart by their members
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        return "torch" if any(n.endswith("data.pkl") for n in names) else "npz"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"  # 8-byte little-endian header length, then the JSON header
    if head[:1] == b"\x80":
        return "torch"  # legacy pickle format
    raise AutointerpError(
        f"{path} is not a weights file autointerp can read.", "a safetensors file, a numpy .npz or a torch state dict."
    )


def check_declared_sizes(cfg: dict, where: Path, tensor: str, sizes: dict[str, int]) -> None:
    """Refuse a config whose declared sizes (e.g. ``d_in``) contradict the weights' shapes."""
    for key, actual in sizes.items():
        declared = cfg.get(key)
        if declared is not None and (isinstance(declared, bool) or str(declared).strip() != str(actual)):
            raise AutointerpError(
                f"{where} says {key}={cfg[key]!r} but {tensor} has {key} {actual}.",
                "a config that matches its weights (both from the same training run).",
                f"correct {key} in {where.name}, or check that the weights are the right ones.",
            )
