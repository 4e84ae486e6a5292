"""The interface every dictionary implements, whatever format it was loaded from.

A dictionary maps a vector read at one module of the subject model ([..., d_in]) to latents
([..., d_sae]) and gives, for each latent, the direction it writes ([d_sae, d_out]). ``reads`` says
whether the vector is the module's output (an SAE on the residual stream) or its input (a
transcoder, or the MLP neurons read at the input of the down projection).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import torch

from ...errors import AutointerpError

Reads = Literal["output", "input"]


class Dictionary(ABC):
    """A sparse dictionary: ``encode`` [..., d_in] -> [..., d_sae], ``decoder_directions`` [d_sae, d_out].

    Attributes every implementation sets: ``d_in``, ``d_sae``, ``hookpoint`` (module name it reads,
    '' when the files do not say; the files' own naming, e.g. TransformerLens ``blocks.3.hook_resid_post``
    or sparsify's ``layers.3`` relative to ``model.base_model``), ``reads`` ('output' or 'input'),
    ``signed`` (latents can be negative), ``format`` (which loader produced it), ``source`` (path) and
    ``files`` (every file the weights and configuration were read from, for identity hashes; empty for
    the MLP neurons, which are the model's own weights).
    """

    d_in: int
    d_sae: int
    hookpoint: str = ""
    hookpoint_out: str = ""  # where a transcoder writes, when the files say
    reads: Reads = "output"
    signed: bool = False
    format: str = ""
    source: str = ""
    files: tuple[str, ...] = ()
    reads_vectors: bool = True  # False: encode_tokens reads token ids only (planted), so the model need not run

    @abstractmethod
    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Dictionary:
        """Move every tensor to ``device`` and ``dtype``; returns self."""

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Dense latents [..., d_sae] of inputs [..., d_in]."""

    @abstractmethod
    def decoder_directions(self) -> torch.Tensor:
        """[d_sae, d_out]: what adding one unit of latent i adds to the output (the module's output space
        for a transcoder)."""

    def encode_tokens(self, x: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        """Dense latents [batch, seq, d_sae] of the vectors ``x`` read for ``token_ids`` [batch, seq]. What
        collect calls: a dictionary of vectors reads ``x`` only; the planted one reads the ids only."""
        return self.encode(x)

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, indices), each [..., k]: the non-zero latents of each position.

        Generic version: k is the largest number of non-zero latents at any position of ``x``; positions
        with fewer are padded with value 0 (at arbitrary zero latents). TopK-style dictionaries override
        this with their exact k without building the dense tensor.
        """
        dense = self.encode(x)
        k = max(int((dense != 0).sum(-1).max()) if dense.numel() else 0, 1)
        top = dense.abs().topk(k, dim=-1)
        return dense.gather(-1, top.indices), top.indices

    def describe(self) -> str:
        """One line for logs and error messages."""
        where = self.hookpoint or "an unnamed hookpoint"
        return (
            f"{self.format} dictionary with {self.d_sae} latents reading the {self.reads} of {where} "
            f"(width {self.d_in}){' [signed]' if self.signed else ''}"
        )


def check_input_size(dictionary: Dictionary, width: int, hookpoint: str = "", model_name: str = "") -> None:
    """Raise a clear error when the subject model's vectors (``width``) do not fit the dictionary."""
    if int(width) == dictionary.d_in:
        return
    where = hookpoint or dictionary.hookpoint or "the hookpoint"
    what = f" of {model_name}" if model_name else ""
    side = "input" if dictionary.reads == "input" else "output"
    raise AutointerpError(
        f"The dictionary reads vectors of size {dictionary.d_in} but the {side} of {where}{what} has size {width}.",
        "a dictionary trained on this model's hookpoint (d_in equal to the hookpoint's width).",
        f"check the dictionary path, the model and the hookpoint ({dictionary.describe()}).",
    )


def check_tensors(source: str, tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> None:
    """Every tensor named in ``shapes`` has that shape, and every tensor is finite."""
    for name, shape in shapes.items():
        if name in tensors and tuple(tensors[name].shape) != tuple(shape):
            raise AutointerpError(
                f"{name} has shape {tuple(tensors[name].shape)} in {source}.",
                f"{tuple(shape)}, consistent with the other weights.",
                "the weights file is damaged or belongs to another dictionary.",
            )
    for name, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise AutointerpError(
                f"{name} in {source} contains NaN or Inf values.",
                "finite weights.",
                "the checkpoint is damaged (or training diverged); use another one.",
            )


def require(source: str, tensors: dict[str, torch.Tensor], names: tuple[str, ...], expected: str) -> None:
    """Raise naming the first tensor of ``names`` missing from ``tensors``."""
    for name in names:
        if name not in tensors:
            raise AutointerpError(
                f"{source} has no tensor {name!r}.",
                expected,
                f"tensors present: {', '.join(sorted(tensors)) or 'none'}",
            )
