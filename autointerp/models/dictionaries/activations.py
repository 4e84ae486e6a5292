"""Activation functions of sparse dictionaries, as pure functions of the pre-activations [..., d_sae].

Dense ones return [..., d_sae]; the selecting ones (TopK, AbsTopK, GroupMax) return (values, indices)
of shape [..., k], which ``scatter`` turns into the dense form.
"""

from __future__ import annotations

import torch

ACTIVATIONS = ("relu", "jumprelu", "topk", "abstopk", "groupmax", "gated")
SELECTING = ("topk", "abstopk", "groupmax")


def jumprelu(pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """ReLU(pre) where pre > threshold, else 0 (threshold per latent [d_sae] or a scalar)."""
    return torch.relu(pre) * (pre > threshold)


def topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest pre-activations per position, through a ReLU (so fewer than k may be non-zero)."""
    top = pre.topk(k, dim=-1)
    return torch.relu(top.values), top.indices


def abstopk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k pre-activations of largest magnitude per position, with their sign."""
    indices = pre.abs().topk(k, dim=-1).indices
    return pre.gather(-1, indices), indices


def groupmax(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sparsify's GroupMax: the latents split into k equal contiguous groups; the largest ReLU'd one of each."""
    d_sae = pre.shape[-1]
    values, local = torch.relu(pre).unflatten(-1, (k, d_sae // k)).max(dim=-1)
    offsets = torch.arange(0, d_sae, d_sae // k, device=pre.device)
    return values, local + offsets


def scatter(values: torch.Tensor, indices: torch.Tensor, d_sae: int) -> torch.Tensor:
    """Dense [..., d_sae] tensor holding ``values`` at ``indices`` and zeros elsewhere."""
    dense = values.new_zeros(*values.shape[:-1], d_sae)
    return dense.scatter_(-1, indices, values)
