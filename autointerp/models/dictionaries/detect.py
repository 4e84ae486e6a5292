"""Which format a folder holds, from the files in it (never from its name), and release folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import dictionary_learning, gemma_scope, llama_scope, saelens, sparsify
from .linear import LinearDictionary


def _has(folder: Path, *names: str) -> bool:
    return all((folder / n).is_file() for n in names)


# (format, what it looks like, test on a folder, loader), in the order they are tried
FORMATS: list[tuple[str, str, Callable[[Path], bool], Callable[[Path], LinearDictionary]]] = [
    (
        "SAELens",
        "cfg.json + sae_weights.safetensors",
        lambda f: _has(f, saelens.CONFIG_FILE, saelens.WEIGHTS_FILE),
        saelens.load,
    ),
    (
        "sparsify",
        "cfg.json + sae.safetensors",
        lambda f: _has(f, sparsify.CONFIG_FILE, sparsify.WEIGHTS_FILE),
        sparsify.load,
    ),
    (
        "Llama Scope",
        "hyperparams.json + checkpoints/final.safetensors",
        lambda f: _has(f, llama_scope.CONFIG_FILE),
        llama_scope.load,
    ),
    (
        "Gemma Scope",
        "params.npz or params.safetensors",
        lambda f: gemma_scope.weights_file(f) is not None,
        gemma_scope.load,
    ),
    (
        "dictionary_learning",
        "config.json (with 'trainer') + ae.pt",
        dictionary_learning.is_dictionary_learning,
        dictionary_learning.load,
    ),
]

LOOKED_FOR = "; ".join(f"{files} ({name})" for name, files, _, _ in FORMATS)


def detect(folder: Path) -> str | None:
    """The name of the format whose files ``folder`` holds, or None."""
    if not folder.is_dir():
        return None
    return next((name for name, _, test, _ in FORMATS if test(folder)), None)


def loader(name: str) -> Callable[[Path], LinearDictionary]:
    return next(load for fmt, _, _, load in FORMATS if fmt == name)


def find_dictionaries(root: Path, max_depth: int = 3) -> list[str]:
    """Paths, relative to ``root``, of the sub-folders that hold a dictionary (a release's hookpoints)."""
    found: list[str] = []

    def walk(folder: Path, depth: int) -> None:
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if detect(child):
                found.append(child.relative_to(root).as_posix())
            elif depth < max_depth:
                walk(child, depth + 1)

    walk(root, 1)
    return found
