"""Deterministic pseudo-random keys computed from (seed, sequence, latent).

Every random choice of the sampler (which contexts enter a reservoir, where a random window starts,
which split a context joins) is a hash of what is chosen rather than a draw from a stateful generator.
The choices therefore do not depend on batch size, device, or on how the corpus is sharded across
workers: a merge of shards selects exactly what a single pass selects.

All arithmetic stays below 2**62 in int64, so it is exact on every torch device.
"""

from __future__ import annotations

import torch

_M31 = 0x7FFFFFFF
_C1 = 0x5BD1E995 & _M31
_C2 = 0x1B873593


def _round(h: torch.Tensor) -> torch.Tensor:
    h = (h * _C1) & _M31
    h = h ^ (h >> 15)
    h = (h * _C2) & _M31
    return h ^ (h >> 13)


def hash31(*values: torch.Tensor | int, init: int = 0x3C6EF372) -> torch.Tensor:
    """A 31-bit hash of non-negative int64 tensors (broadcast together) or ints."""
    h = torch.tensor(init & _M31, dtype=torch.int64)
    for value in values:
        v = torch.as_tensor(value, dtype=torch.int64)
        h = _round(h.to(v.device) ^ (v & _M31))
        h = _round(h ^ ((v >> 31) & _M31))
    return h


def hash62(*values: torch.Tensor | int) -> torch.Tensor:
    """A 62-bit key, non-negative, for uniform random ordering: two 31-bit hashes whose chains start
    from different states, so that a collision needs both to collide."""
    hi = hash31(*values, init=0x2545F491)
    lo = hash31(*values, init=0x4F6CDD1D)
    return (hi << 31) | lo
