"""Hookpoint names as the files write them."""

from __future__ import annotations

from .base import Reads


def split_hf_hook(name: str) -> tuple[str, Reads]:
    """'model.layers.3.output' -> ('model.layers.3', 'output'); '...o_proj.input' -> ('...o_proj', 'input').

    Gemma Scope 2 and SAELens' ``hf_hook_name`` name a Hugging Face module with the side read as a last
    component; a name without one is a module whose output is read.
    """
    module, _, side = name.rpartition(".")
    if module and side in ("output", "input"):
        return module, side  # type: ignore[return-value]
    return name, "output"
