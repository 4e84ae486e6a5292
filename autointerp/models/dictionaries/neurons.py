"""The MLP neurons of the subject model as a dictionary: a baseline every SAE should beat.

Latent i is the i-th input of the MLP's down projection (``model.layers.N.mlp.down_proj`` in Llama-style
models, ``transformer.h.N.mlp.c_proj`` in GPT-2), so ``reads='input'`` at that module; its decoder
direction is the down projection's i-th column. Neuron activations (SiLU(gate) * up, GELU) can be
negative: ``signed=True``. With ``k`` the k neurons of largest magnitude per position are kept, with
their sign; without it every neuron is a latent.
"""

from __future__ import annotations

import torch

from ...errors import AutointerpError
from . import activations as act
from .base import Dictionary

DOWN_PROJECTIONS = ("down_proj", "c_proj", "fc2", "dense_4h_to_h", "fc_out", "w2")


class NeuronDictionary(Dictionary):
    """Identity (or top-k by magnitude) over the input of a down projection; see the module docstring."""

    def __init__(self, directions: torch.Tensor, hookpoint: str, k: int | None = None):
        self.directions = directions  # [d_mlp, d_model]
        self.d_in = self.d_sae = int(directions.shape[0])
        self.k = k
        if k is not None and not 0 < int(k) <= self.d_sae:
            raise AutointerpError(
                f"MLP-neuron dictionary with k={k} and {self.d_sae} neurons.",
                f"k between 1 and {self.d_sae}, or None for every neuron.",
            )
        self.hookpoint, self.reads, self.signed = hookpoint, "input", True
        self.format = "MLP neurons" if k is None else f"MLP neurons (top {k})"
        self.source = hookpoint

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> NeuronDictionary:
        self.directions = self.directions.to(device=device, dtype=dtype)
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.directions.dtype)
        if self.k is None:
            return x
        return act.scatter(*act.abstopk(x, self.k), self.d_sae)

    def encode_sparse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None:
            return super().encode_sparse(x)
        return act.abstopk(x.to(self.directions.dtype), self.k)

    def decoder_directions(self) -> torch.Tensor:
        return self.directions


def mlp_neurons(model, layer_module_name: str, k: int | None = None) -> NeuronDictionary:
    """MLP neurons read at the input of a down projection.

    ``layer_module_name`` names the down projection itself (``model.layers.3.mlp.down_proj``), or the
    MLP or decoder layer holding it (``model.layers.3.mlp``, ``transformer.h.3``). ``model`` is a torch
    module or autointerp's SubjectModel.
    """
    module_tree = getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model
    modules = dict(module_tree.named_modules())
    if layer_module_name not in modules:
        raise AutointerpError(
            f"The model has no module named {layer_module_name!r}.",
            "the dotted name of a down projection, an MLP or a decoder layer (as in model.named_modules()).",
        )
    name = _down_projection(modules, layer_module_name)
    return NeuronDictionary(_columns(modules[name]).detach(), name, k)


def _is_projection(module: torch.nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (torch.nn.Linear, Conv1D))


def _down_projection(modules: dict[str, torch.nn.Module], name: str) -> str:
    if _is_projection(modules[name]):
        return name
    prefix = name + "." if name else ""
    found = [
        n
        for n, m in modules.items()
        if n.startswith(prefix) and n.rsplit(".", 1)[-1] in DOWN_PROJECTIONS and _is_projection(m)
    ]
    if len(found) > 1:  # GPT-2 blocks hold attn.c_proj and mlp.c_proj: the MLP's is the one we want
        found = [n for n in found if "mlp" in n[len(prefix) :].split(".")] or found
    if len(found) != 1:
        raise AutointerpError(
            f"Cannot tell which down projection of {name!r} to read ({len(found)} candidates"
            f"{': ' + ', '.join(found) if found else ''}).",
            f"a module named one of {', '.join(DOWN_PROJECTIONS)} inside it, or the projection's own name.",
            "pass the down projection's full name, e.g. model.layers.3.mlp.down_proj.",
        )
    return found[0]


def _columns(module: torch.nn.Module) -> torch.Tensor:
    """[d_mlp, d_model]: nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out]."""
    if isinstance(module, torch.nn.Linear):
        return module.weight.T
    return module.weight
