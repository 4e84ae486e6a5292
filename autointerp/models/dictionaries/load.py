"""``load_dictionary``: a path or hub id in, a Dictionary out, whatever the format."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ...errors import AutointerpError
from .base import Dictionary
from .detect import LOOKED_FOR, detect, find_dictionaries, loader
from .files import tensor_names
from .gemma_scope import load as load_gemma_scope
from .gemma_scope import looks_like_gemma_scope
from .hub import download, looks_like_hub_id
from .planted import SCHEME, load_planted

log = logging.getLogger(__name__)


def load_dictionary(path: str | Path, subject_model=None, *, hookpoint: str | None = None) -> Dictionary:
    """Load the dictionary at ``path``, recognising its format from the files there.

    ``path`` is a dictionary folder, a weights file (Gemma Scope), a release folder holding one folder per
    hookpoint (pick one with ``hookpoint=`` or by passing the sub-folder), or a Hugging Face Hub id
    ``owner/repo[/subfolder]`` that is not a local path (downloaded with huggingface_hub).
    ``planted:FILE`` is a planted dictionary (rules over token ids, docs/planted.md).
    ``subject_model`` (a torch module or autointerp's SubjectModel), when given, turns a hookpoint named
    relative to ``model.base_model`` (sparsify's convention) into the model's full module name.
    """
    if isinstance(path, str) and path.startswith(SCHEME):
        return load_planted(path)
    local = _local_path(path)
    if hookpoint is not None:
        local = _pick(local, hookpoint)
    dictionary = _load_local(local)
    if subject_model is not None:
        resolve_module_names(dictionary, subject_model)
    log.info("loaded %s from %s", dictionary.describe(), local)
    return dictionary


def _local_path(path: str | Path) -> Path:
    local = Path(path).expanduser()
    if local.exists():
        return local
    if isinstance(path, str) and looks_like_hub_id(path):
        return download(path)
    raise AutointerpError(
        f"The dictionary path {path} does not exist.",
        f"a folder or file holding a dictionary ({LOOKED_FOR}), or a Hugging Face Hub id owner/repo[/subfolder].",
    )


def _pick(root: Path, hookpoint: str) -> Path:
    target = root / hookpoint
    if target.is_dir() and detect(target):
        return target
    available = find_dictionaries(root) if root.is_dir() else []
    raise AutointerpError(
        f"{root} holds no dictionary for hookpoint {hookpoint!r}.",
        f"one of: {', '.join(available) if available else '(no dictionary sub-folders found)'}.",
        "pass one of those names as hookpoint=, or the sub-folder's path.",
    )


def _load_local(path: Path) -> Dictionary:
    if path.is_file():
        return _load_file(path)
    fmt = detect(path)
    if fmt:
        return loader(fmt)(path)
    found = find_dictionaries(path)
    if len(found) == 1:
        log.info("%s holds one dictionary, %s; loading it", path, found[0])
        return _load_local(path / found[0])
    if found:
        raise AutointerpError(
            f"{path} is a release folder with {len(found)} dictionaries, one per hookpoint: {', '.join(found)}.",
            "one dictionary.",
            f"pass hookpoint=NAME (e.g. hookpoint={found[0]!r}) or the sub-folder's path, e.g. {path / found[0]}.",
        )
    present = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    raise AutointerpError(
        f"{path} matches no known dictionary format (it holds: {', '.join(present[:12]) or 'nothing'}"
        f"{', ...' if len(present) > 12 else ''}).",
        f"one of: {LOOKED_FOR}; or sub-folders holding these.",
        "pass the folder the dictionary was saved to.",
    )


def _load_file(path: Path) -> Dictionary:
    try:
        names = tensor_names(path)
    except AutointerpError:  # not a weights file (a cfg.json, say)
        names = []
    if names and looks_like_gemma_scope(names):
        return load_gemma_scope(path)
    if detect(path.parent):  # a file of a dictionary folder (cfg.json, the weights): load the folder
        return _load_local(path.parent)
    raise AutointerpError(
        f"{path} is a file that holds no dictionary autointerp recognises.",
        f"a Gemma Scope weights file (W_enc, W_dec, b_enc, b_dec, threshold), or a folder with one of: {LOOKED_FOR}.",
        f"for a planted file (docs/planted.md) write planted:{path}." if path.suffix in (".json", ".toml") else None,
    )


def resolve_module_names(dictionary: Dictionary, subject_model) -> Dictionary:
    """Rewrite ``hookpoint``/``hookpoint_out`` named relative to ``model.base_model`` (sparsify's
    ``layers.3``) as full module names of ``subject_model`` (``model.layers.3``); other names are kept."""
    model = subject_model if isinstance(subject_model, torch.nn.Module) else getattr(subject_model, "model", None)
    if not isinstance(model, torch.nn.Module) or not dictionary.hookpoint:
        return dictionary
    names = {name: module for name, module in model.named_modules()}
    base = getattr(model, "base_model", None)
    prefix = next((name for name, module in names.items() if module is base and name), "")
    for attr in ("hookpoint", "hookpoint_out"):
        value = getattr(dictionary, attr)
        if value and value not in names and prefix and f"{prefix}.{value}" in names:
            setattr(dictionary, attr, f"{prefix}.{value}")
    return dictionary
