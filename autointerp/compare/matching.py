"""One-to-one matching of two dictionaries' latents by the cosine of their decoder directions.

Two ways, chosen by size (the choice is recorded in ``compare_summary`` as measure ``assignment``):

* ``hungarian``: when ``n_a * n_b <= EXACT_LIMIT`` (4096^2 cells, 128 MiB as float64) the full cosine
  matrix is built and ``scipy.optimize.linear_sum_assignment`` finds the matching of largest total
  cosine exactly.
* ``sparse``: above that, no dense matrix is built. Candidates are each latent's ``k`` nearest latents
  of the other side, both directions (``models.neighbours.nearest_by_cosine``, chunked), and
  ``scipy.sparse.csgraph.min_weight_full_bipartite_matching`` finds the best matching that uses only
  candidate edges (weights ``2 - cos``, all positive, so least total weight = largest total cosine).
  It is exact on the candidate graph; a pair outside every top-k list is never matched.
* ``greedy``: when the candidate graph has no matching covering the smaller side, pairs are taken by
  descending cosine, each latent at most once; latents left over stay unmatched.

Every function here works on tensors only, so it is tested without models or databases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.neighbours import nearest_by_cosine, unit_rows

#: Largest n_a x n_b matched exactly with the dense Hungarian algorithm.
EXACT_LIMIT = 4096 * 4096
#: Candidates per latent (each direction) for the sparse matching.
DEFAULT_CANDIDATES = 8
#: Cosines held per chunk of the candidate search (2^26 floats, 256 MiB): rows per chunk = this / n_keys.
CHUNK_CELLS = 2**26


@dataclass
class Matching:
    """Matched pairs ``latent_a[i]`` <-> ``latent_b[i]`` with their decoder cosine, sorted by latent_a."""

    latent_a: np.ndarray  # int64 [m]
    latent_b: np.ndarray  # int64 [m]
    cosine: np.ndarray  # float64 [m]
    method: str  # 'hungarian' | 'sparse' | 'greedy'

    def __len__(self) -> int:
        return len(self.latent_a)


def _sorted(rows: np.ndarray, cols: np.ndarray, cos: np.ndarray, method: str) -> Matching:
    order = np.argsort(rows, kind="stable")
    cos = np.clip(cos[order].astype(np.float64), -1.0, 1.0)  # float32 rounding can pass 1
    return Matching(rows[order].astype(np.int64), cols[order].astype(np.int64), cos, method)


def hungarian(a: torch.Tensor, b: torch.Tensor) -> Matching:
    """The exact maximum-total-cosine one-to-one matching of the rows of ``a`` and ``b`` (dense)."""
    from scipy.optimize import linear_sum_assignment

    cos = (unit_rows(a) @ unit_rows(b).T).double().numpy()
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return _sorted(rows, cols, cos[rows, cols], "hungarian")


def candidate_edges(a: torch.Tensor, b: torch.Tensor, k: int, chunk: int | None = None) -> tuple[np.ndarray, ...]:
    """(rows, cols, cosines) of the union of each a-row's ``k`` nearest b-rows and each b-row's ``k``
    nearest a-rows, without duplicates. ``chunk`` (rows per block; default: ``CHUNK_CELLS`` cosines a
    block) bounds memory."""

    def rows_per_block(n_keys: int) -> int:
        return chunk or max(64, min(4096, CHUNK_CELLS // max(n_keys, 1)))

    ab = nearest_by_cosine(a, b, k=k, chunk=rows_per_block(b.shape[0]))
    ba = nearest_by_cosine(b, a, k=k, chunk=rows_per_block(a.shape[0]))
    rows = np.concatenate([np.repeat(np.arange(a.shape[0]), ab.indices.shape[1]), ba.indices.reshape(-1).numpy()])
    cols = np.concatenate([ab.indices.reshape(-1).numpy(), np.repeat(np.arange(b.shape[0]), ba.indices.shape[1])])
    cos = np.concatenate([ab.cosines.reshape(-1).numpy(), ba.cosines.reshape(-1).numpy()]).astype(np.float64)
    key = rows.astype(np.int64) * b.shape[0] + cols
    _, first = np.unique(key, return_index=True)
    return rows[first], cols[first], cos[first]


def greedy(rows: np.ndarray, cols: np.ndarray, cos: np.ndarray) -> Matching:
    """Pairs by descending cosine, each row and column used once."""
    used_rows, used_cols, keep = set(), set(), []
    for i in np.argsort(-cos, kind="stable"):
        r, c = int(rows[i]), int(cols[i])
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            keep.append(i)
    keep = np.asarray(keep, dtype=np.int64)
    return _sorted(rows[keep], cols[keep], cos[keep], "greedy")


def sparse_matching(
    a: torch.Tensor, b: torch.Tensor, k: int = DEFAULT_CANDIDATES, chunk: int | None = None
) -> Matching:
    """The best one-to-one matching on the top-``k`` candidate graph (see the module docstring)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    rows, cols, cos = candidate_edges(a, b, k, chunk)
    transpose = a.shape[0] > b.shape[0]  # scipy matches every row: rows must be the smaller side
    r, c = (cols, rows) if transpose else (rows, cols)
    shape = (b.shape[0], a.shape[0]) if transpose else (a.shape[0], b.shape[0])
    graph = csr_matrix((2.0 - cos, (r, c)), shape=shape)
    try:
        left, right = min_weight_full_bipartite_matching(graph)
    except ValueError:  # no matching covers the smaller side within the candidates
        return greedy(rows, cols, cos)
    picked = graph[left, right]
    matched = 2.0 - np.asarray(picked.toarray() if hasattr(picked, "toarray") else picked).ravel()
    ra, rb = (right, left) if transpose else (left, right)
    return _sorted(np.asarray(ra), np.asarray(rb), np.asarray(matched), "sparse")


def match_decoders(
    a: torch.Tensor,
    b: torch.Tensor,
    exact_limit: int = EXACT_LIMIT,
    k: int = DEFAULT_CANDIDATES,
    chunk: int | None = None,
) -> Matching:
    """One-to-one matching of decoder directions ``a`` [n_a, d] and ``b`` [n_b, d]: Hungarian when
    ``n_a * n_b <= exact_limit``, else the sparse candidate matching (greedy where that has none)."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"decoder widths differ: {a.shape[1]} vs {b.shape[1]}")
    if a.shape[0] * b.shape[0] <= exact_limit:
        return hungarian(a, b)
    return sparse_matching(a, b, k=k, chunk=chunk)


def pw_mcc(matching: Matching, n_a: int, n_b: int) -> float:
    """PW-MCC (Song et al. 2025, "Position: Mechanistic Interpretability Should Prioritize Feature
    Consistency in SAEs"): the mean, over the optimal one-to-one matching of the two dictionaries'
    latents, of the cosine similarity of matched decoder directions. The mean runs over min(n_a, n_b)
    pairs; a latent of the smaller side left unmatched (greedy only) counts as cosine 0."""
    return float(matching.cosine.sum() / max(min(n_a, n_b), 1))


def random_matching(n_a: int, n_b: int, d: int, seed: int = 0, **match_options) -> Matching:
    """The matching of two random Gaussian dictionaries of shapes [n_a, d] and [n_b, d], matched the same
    way as the real pair: its PW-MCC and shares are the baselines of a comparison in which nothing was
    learned in common (the best of many random cosines is well above 0 when n is large and d small)."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(n_a, d, generator=generator)
    b = torch.randn(n_b, d, generator=generator)
    return match_decoders(a, b, **match_options)


def matched_share(matching: Matching, n_a: int, n_b: int, threshold: float) -> float:
    """Share of the smaller side's latents matched with decoder cosine above ``threshold``."""
    return float((matching.cosine > threshold).sum() / max(min(n_a, n_b), 1))
