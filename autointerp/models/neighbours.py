"""Nearest directions by cosine, chunked: for each row of ``queries`` its ``k`` most similar rows of
``keys``, never holding the whole ``[n_queries, n_keys]`` matrix.

Used wherever latents are compared by their decoder directions: near-duplicate latents within one SAE,
candidate matches between two SAEs, and the neighbours whose firing picks hard negatives. Memory is
``chunk x n_keys`` similarities at a time (plus the ``[n, k]`` result), so two 131k-latent dictionaries
are compared in bounded memory; time is the full ``n_queries x n_keys x d`` product.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Neighbours:
    """``indices[i, j]``: the j-th most similar key of query i; ``cosines[i, j]``: that similarity."""

    indices: torch.Tensor  # int64 [n_queries, k]
    cosines: torch.Tensor  # float32 [n_queries, k]


def unit_rows(directions: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (float32); an all-zero row stays zero (cosine 0 with everything)."""
    directions = directions.float()
    return directions / directions.norm(dim=1, keepdim=True).clamp(min=1e-12)


def nearest_by_cosine(
    queries: torch.Tensor,
    keys: torch.Tensor | None = None,
    k: int = 10,
    chunk: int = 4096,
    exclude_self: bool | None = None,
    absolute: bool = False,
) -> Neighbours:
    """The ``k`` keys of largest cosine to each query (rows are directions; ``keys`` defaults to the
    queries). ``exclude_self`` (default: when ``keys`` is None) leaves each row out of its own list.
    ``absolute`` ranks by |cosine| (for signed dictionaries, where a flipped direction is the same
    feature); the returned cosines keep their sign."""
    same = keys is None
    exclude_self = same if exclude_self is None else exclude_self
    q = unit_rows(queries)
    key_rows = q if same else unit_rows(keys)
    if q.shape[1] != key_rows.shape[1]:
        raise ValueError(f"queries have width {q.shape[1]}, keys {key_rows.shape[1]}: not the same space")
    k = min(k, key_rows.shape[0] - (1 if exclude_self else 0))
    indices = torch.empty(q.shape[0], max(k, 0), dtype=torch.int64)
    cosines = torch.empty(q.shape[0], max(k, 0), dtype=torch.float32)
    if k <= 0:
        return Neighbours(indices, cosines)
    for start in range(0, q.shape[0], chunk):
        block = q[start : start + chunk] @ key_rows.T  # [chunk, n_keys]
        rank = block.abs() if absolute else block.clone()
        if exclude_self:
            rows = torch.arange(block.shape[0])
            rank[rows, rows + start] = -float("inf")
        top = rank.topk(k, dim=1).indices
        indices[start : start + chunk] = top
        cosines[start : start + chunk] = block.gather(1, top)
    return Neighbours(indices, cosines)
