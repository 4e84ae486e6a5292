"""How well a dictionary reconstructs what it reads."""

from __future__ import annotations

import math

import torch


def fraction_of_variance_unexplained(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 over a batch [n, d]."""
    resid = (x - x_hat).pow(2).sum()
    total = (x - x.mean(0)).pow(2).sum()
    return float(resid / total) if total > 0 else math.nan
