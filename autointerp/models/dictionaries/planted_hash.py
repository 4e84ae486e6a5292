"""Uniform numbers per (seed, latent, sequence, position) from the token ids alone, for planted latents.

A sequence is keyed by a hash of its token ids at their positions, so the numbers do not depend on the
batch, the device or how the corpus is sharded; the mixing is ``autointerp.hashing``'s, which collect's
own choices use too. All arithmetic stays below 2**62 in int64, exact on every torch device.
"""

from __future__ import annotations

import torch

from ...hashing import hash31

_M31 = 0x7FFFFFFF


def sequence_keys(ids: torch.Tensor) -> torch.Tensor:
    """[batch] 31-bit keys of token ids [batch, seq]: a sum of hashes of (token, position)."""
    positions = torch.arange(ids.shape[-1], device=ids.device)
    return hash31(ids.to(torch.int64), positions).sum(-1) & _M31


def position_uniforms(ids: torch.Tensor, latents: torch.Tensor, seed: int, stream: int) -> torch.Tensor:
    """[batch, seq, n] numbers in [0, 1), one per position of ``ids`` [batch, seq] and latent of ``latents``
    [n], determined by (seed, stream, latent, the sequence's token ids, position)."""
    keys = sequence_keys(ids)[:, None, None]
    positions = torch.arange(ids.shape[-1], device=ids.device)[None, :, None]
    h = hash31(seed, stream, latents.to(ids.device)[None, None, :], keys, positions)
    return h.to(torch.float64).div(2.0**31).to(torch.float32)
