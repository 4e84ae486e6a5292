"""Turn the sampler's buffers into each latent's explain and test sets.

The split rule (seeded, documented, the same for every latent):

1. ``top`` contexts (the ``top_k`` strongest; for signed latents the ``top_k`` strongest of each sign)
   join the **explain** set.
2. The reservoir's activating contexts are ranked by maximum activation (its magnitude for signed
   latents) and cut into ``n_quantiles`` equal-count bins; quantile 0 holds the weakest contexts,
   quantile n-1 the strongest (delphi numbers its bins the other way round). Contexts that are already
   top contexts (of either sign) are taken out. Within each bin the rest are ordered by a hash of
   (seed, sequence, latent); the first ``test_per_quantile`` join the **test** set and the next
   ``explain_per_quantile`` the **explain** set. The test set is filled first so that every quantile is
   represented when a bin runs short (the strongest bin of a rare latent, whose strongest contexts are
   top contexts).
3. Non-activating contexts, already in random (hash) order: the first ``random_test`` join the test set,
   the next ``random_explain`` the explain set.

Following the delphi paper, the default explain set draws from every quantile rather than only the top,
which it found gives explanations that generalise better. A latent has at most one activating context
per sequence and non-activating windows never overlap that sequence's activating window, so the explain
and test sets of a latent share no context and no token position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .buffers import EMPTY
from .hashing import hash62
from .sampler import SALT_SPLIT, StreamingSampler

SPLITS = ("explain", "test")
KINDS = ("top", "quantile", "random")


@dataclass
class SplitSizes:
    n_quantiles: int
    explain_per_quantile: int
    test_per_quantile: int
    random_explain: int
    random_test: int
    seed: int


@dataclass
class Selection:
    """Flat rows, one per (latent, context) example; split and kind are indices into SPLITS and KINDS."""

    latent: np.ndarray
    split: np.ndarray
    kind: np.ndarray
    quantile: np.ndarray  # -1 where not a quantile example
    rank: np.ndarray  # order within (latent, kind, quantile): by |activation| for top (per sign), by hash otherwise
    sequence: np.ndarray
    start: np.ndarray
    max_activation: np.ndarray
    document: np.ndarray  # source document of the context's peak (sampler.py)
    tokens: np.ndarray  # [rows, window]
    activations: np.ndarray  # [rows, window]
    quantile_edges: np.ndarray  # [latents, n_quantiles]: lowest reservoir |value| of each bin (NaN if empty)


def select_examples(sampler: StreamingSampler, sizes: SplitSizes) -> Selection:
    sampler.finish()
    top = _top_rows(sampler)
    quantile, edges = _quantile_rows(sampler, sizes)
    negative = _negative_rows(sampler, sizes)
    rows = {k: np.concatenate([top[k], quantile[k], negative[k]]) for k in top}
    negative_top = (rows["kind"] == 0) & (rows["max_activation"] < 0)  # a signed latent's other side, after
    order = np.lexsort((rows["rank"], negative_top, rows["quantile"], rows["kind"], rows["latent"]))
    return Selection(quantile_edges=edges, **{k: v[order] for k, v in rows.items()})


def _rows(lat, split, kind, quantile, rank, buf, slot, with_acts=True) -> dict[str, np.ndarray]:
    n = lat.numel()
    window = buf.tokens.shape[-1]
    acts = buf.activations[lat, slot] if (with_acts and buf.activations is not None) else torch.zeros(n, window)
    return {
        "latent": lat.cpu().numpy().astype(np.int32),
        "split": np.full(n, split, dtype=np.int8) if isinstance(split, int) else split.cpu().numpy().astype(np.int8),
        "kind": np.full(n, kind, dtype=np.int8),
        "quantile": quantile.cpu().numpy().astype(np.int16),
        "rank": rank.cpu().numpy().astype(np.int32),
        "sequence": buf.sequence[lat, slot].cpu().numpy(),
        "start": buf.start[lat, slot].cpu().numpy(),
        "max_activation": buf.value[lat, slot].cpu().numpy(),
        "document": buf.document[lat, slot].cpu().numpy(),
        "tokens": buf.tokens[lat, slot].cpu().numpy(),
        "activations": acts.float().cpu().numpy(),
    }


def _top_rows(sampler: StreamingSampler) -> dict[str, np.ndarray]:
    """Rows of the top buffer and, for signed latents, of the negative side's, each ranked from 0."""
    parts = [_ranked_rows(buf) for buf in (sampler.top, sampler.top_negative) if buf is not None]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _ranked_rows(buf) -> dict[str, np.ndarray]:
    order = torch.sort(buf.key, dim=1, descending=True, stable=True).indices
    sorted_key = torch.gather(buf.key, 1, order)
    lat, pos = (sorted_key > EMPTY).nonzero(as_tuple=True)
    slot = order[lat, pos]
    return _rows(lat, 0, 0, torch.full_like(lat, -1), pos, buf, slot)


def _quantile_rows(sampler: StreamingSampler, sizes: SplitSizes):
    buf = sampler.reservoir
    L, cap = buf.key.shape
    n_q = sizes.n_quantiles
    valid = buf.key > EMPTY
    m = valid.sum(1, keepdim=True)  # reservoir members per latent
    # Rank members by |value| (ascending; the value itself when unsigned); empty slots sort last.
    magnitude = buf.value.abs()
    value = torch.where(valid, magnitude, torch.tensor(float("inf"), device=buf.value.device))
    by_value = torch.sort(value, dim=1, stable=True).indices
    rank = torch.empty_like(by_value)
    rank.scatter_(1, by_value, torch.arange(cap, device=rank.device).expand(L, cap))
    quantile = torch.where(valid, rank * n_q // m.clamp(min=1), n_q)
    # Lowest value of each bin (NaN for an empty bin), stored so that bin membership can be checked.
    edges = torch.full((L, n_q), float("nan"), device=value.device)
    first_in_bin = valid & ((rank == 0) | (quantile != _quantile_of_rank(rank - 1, m, n_q)))
    fl, fs = first_in_bin.nonzero(as_tuple=True)
    edges[fl, quantile[fl, fs]] = magnitude[fl, fs]
    # Take out contexts that are top contexts of the same latent (same sequence: same window).
    none = torch.tensor(-2, device=value.device)
    top_seq = torch.cat(
        [
            torch.where(top.key > EMPTY, top.sequence, none)
            for top in (sampler.top, sampler.top_negative)
            if top is not None
        ],
        dim=1,
    )
    in_top = (buf.sequence.unsqueeze(2) == top_seq.unsqueeze(1)).any(2)
    eligible = valid & ~in_top
    # Within each (latent, bin): order by hash; test first, then explain.
    lat_idx = torch.arange(L, device=value.device).unsqueeze(1)
    priority = hash62(sizes.seed, buf.sequence.clamp(min=0), lat_idx, SALT_SPLIT)
    bin_of = torch.where(eligible, quantile, n_q)
    by_priority = torch.sort(priority, dim=1, stable=True).indices
    by_bin = torch.sort(torch.gather(bin_of, 1, by_priority), dim=1, stable=True).indices
    order = torch.gather(by_priority, 1, by_bin)  # by bin, then by priority within a bin
    sorted_bin = torch.gather(bin_of, 1, order)
    within = torch.arange(cap, device=value.device).expand(L, cap) - torch.searchsorted(
        sorted_bin.contiguous(), sorted_bin.contiguous()
    )
    t, e = sizes.test_per_quantile, sizes.explain_per_quantile
    chosen = (sorted_bin < n_q) & (within < t + e)
    lat, pos = chosen.nonzero(as_tuple=True)
    slot = order[lat, pos]
    w = within[lat, pos]
    split = torch.where(w < t, 1, 0)
    return _rows(lat, split, 1, sorted_bin[lat, pos], w, buf, slot), edges.cpu().numpy()


def _quantile_of_rank(rank: torch.Tensor, m: torch.Tensor, n_q: int) -> torch.Tensor:
    return torch.where(rank >= 0, rank * n_q // m.clamp(min=1), -1)


def _negative_rows(sampler: StreamingSampler, sizes: SplitSizes) -> dict[str, np.ndarray]:
    buf = sampler.negatives
    order = torch.sort(buf.key, dim=1, descending=True, stable=True).indices
    sorted_key = torch.gather(buf.key, 1, order)
    lat, pos = (sorted_key > EMPTY).nonzero(as_tuple=True)
    keep = pos < sizes.random_test + sizes.random_explain
    lat, pos = lat[keep], pos[keep]
    split = torch.where(pos < sizes.random_test, 1, 0)
    return _rows(lat, split, 2, torch.full_like(lat, -1), pos, buf, order[lat, pos], with_acts=False)
