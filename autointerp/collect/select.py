"""Turn the sampler's buffers into each latent's explain, test and (when asked for) validate sets.

The split rule (seeded, documented, the same for every latent; the counts are ``split_rule.py``'s):

1. **Top contexts.** The strongest ``top_k`` contexts (for signed latents the ``top_k`` strongest of each
   sign) join the **explain** set; a latent with fewer activating contexts than the full plan keeps
   fewer (``split_rule.top_quota``), and the rest stay in the pool of step 2.
2. **Quantiles.** The reservoir's activating contexts that remain once the kept top contexts are taken
   out are ranked by maximum activation (its magnitude for signed latents) and cut into ``n_quantiles``
   equal-count bins; quantile 0 holds the weakest contexts, quantile n-1 the strongest (delphi numbers
   its bins the other way round). Binning after the top contexts are removed keeps the strongest bin of
   a rare latent filled. Each bin gives ``test_per_quantile`` test, ``validate_per_quantile`` validate
   and ``explain_per_quantile`` explain contexts, fewer by ``split_rule.split_quotas`` when it is short.
   Within a bin contexts are ordered by a hash of (seed, document, latent) (``split_priority``); the test
   set is filled first, then the validate set, then the explain set.
3. **Negatives.** Non-activating windows, already in random (hash) order: the first ``random_test`` join
   the test set, the next ``random_validate`` the validate set, the next ``random_explain`` the explain
   set. With ``weak_negatives``, a latent with too few of them (one that fires almost everywhere) has the
   shortfall filled with its weakest-activating unused reservoir contexts, weakest first, stored with
   kind ``weak``.

The validate set (0 rows unless ``validate_per_quantile`` or ``random_validate`` is set) is held out
from both others, for choosing between candidate explanations without touching the test set.

**Documents.** A latent's explain, test and validate sets share no source document (so no context and
no token position either): each document is assigned to one split per latent. Documents of the top
contexts are explain documents, so their other contexts cannot join the test or validate set; documents
that hold a test context cannot give validate or explain contexts; documents that hold a validate
context cannot give explain contexts; a negative window joins a split only if its document holds no
context of another split. A context passed over for this reason is skipped, and the next one in
priority order takes its place. Without a validate set this is the two-way rule, row for row.

Following the delphi paper, the default explain set draws from every quantile rather than only the top,
which it found gives explanations that generalise better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..hashing import hash62
from .buffers import EMPTY, KeyedBuffer
from .sampler import SALT_SPLIT, StreamingSampler
from .split_rule import full_plan, split_quotas, top_quota

SPLITS = ("explain", "test", "validate")
KINDS = ("top", "quantile", "random", "weak")
TOP, QUANTILE, RANDOM, WEAK = range(4)
EXPLAIN, TEST, VALIDATE = range(3)


@dataclass
class SplitSizes:
    n_quantiles: int
    explain_per_quantile: int
    test_per_quantile: int
    random_explain: int
    random_test: int
    seed: int
    weak_negatives: bool = False  # fill a latent's missing negatives with its weakest-activating contexts
    validate_per_quantile: int = 0  # quantile contexts per bin in the validate set
    random_validate: int = 0  # non-activating windows in the validate set


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


def _documents(buf: KeyedBuffer) -> torch.Tensor:
    """Source document of each slot's context (-1 for an empty slot); a packed sequence stands in for a
    document where the buffer does not record one."""
    document = getattr(buf, "document", None)
    return document if document is not None else buf.sequence


def split_priority(seed: int, document: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """Order of contexts within a bin: a hash of (seed, document, latent), so that every context of one
    document has the same priority."""
    return hash62(seed, document.clamp(min=0), latent, SALT_SPLIT)


def select_examples(sampler: StreamingSampler, sizes: SplitSizes) -> Selection:
    sampler.finish()
    s = sampler.sizes
    seq_len = s.seq_len
    sides = [buf for buf in (sampler.top, sampler.top_negative) if buf is not None]
    n_sides = sum((buf.key > EMPTY).any(dim=1).to(torch.int64) for buf in sides)
    plan = full_plan(
        s.top_k,
        sizes.n_quantiles,
        sizes.explain_per_quantile,
        sizes.test_per_quantile,
        n_sides,
        sizes.validate_per_quantile,
    )
    keep_top = top_quota(sampler.n_active_contexts, s.top_k, plan)
    top_parts, top_ctx, top_doc = [], [], []
    for buf in sides:
        rows, ctx, doc = _top(buf, keep_top, seq_len)
        top_parts.append(rows)
        top_ctx.append(ctx)
        top_doc.append(doc)
    top_ctx, top_doc = torch.cat(top_ctx, dim=1), torch.cat(top_doc, dim=1)
    quantile, edges, picked, docs = _quantiles(sampler.reservoir, top_ctx, top_doc, sizes, seq_len)
    docs[EXPLAIN] = torch.cat([top_doc, docs[EXPLAIN]], dim=1)
    negative = _negatives(sampler, picked, docs, sizes)
    parts = [*top_parts, quantile, *negative]
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    negative_top = (rows["kind"] == TOP) & (rows["max_activation"] < 0)  # a signed latent's other side, after
    order = np.lexsort((rows["rank"], negative_top, rows["quantile"], rows["kind"], rows["latent"]))
    return Selection(quantile_edges=edges, **{k: v[order] for k, v in rows.items()})


def _rows(lat, split, kind, quantile, rank, buf, slot, with_acts=True) -> dict[str, np.ndarray]:
    n = lat.numel()
    window = buf.window
    acts = buf.activations[lat, slot] if (with_acts and buf.activations is not None) else torch.zeros(n, window)
    # a keys-only buffer has no windows: zeros here, filled by replaying the chosen sequences (replay.py)
    tokens = buf.tokens[lat, slot] if buf.tokens is not None else torch.zeros(n, window, dtype=torch.int32)
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
        "tokens": tokens.cpu().numpy(),
        "activations": acts.float().cpu().numpy(),
    }


def _context_ids(buf: KeyedBuffer, seq_len: int) -> torch.Tensor:
    """A context's identity (its ``context_id``), -1 for an empty slot."""
    return torch.where(buf.key > EMPTY, buf.sequence * seq_len + buf.start.to(torch.int64), -1)


def _isin_rows(query: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Per row, whether each query value (>= 0) is among that row's table values (negatives: absent)."""
    if table.shape[1] == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    ordered = torch.sort(table, dim=1).values
    at = torch.searchsorted(ordered, query.contiguous()).clamp(max=table.shape[1] - 1)
    return (torch.gather(ordered, 1, at) == query) & (query >= 0)


def _within_group(group: torch.Tensor, flag: torch.Tensor) -> torch.Tensor:
    """For rows sorted by ``group`` (ascending), the number of earlier flagged slots in the same group."""
    flag = flag.to(torch.int64)
    before = torch.cumsum(flag, dim=1) - flag
    first = torch.searchsorted(group.contiguous(), group.contiguous())
    return before - torch.gather(before, 1, first)


def _top(buf: KeyedBuffer, keep: torch.Tensor, seq_len: int):
    """Rows of one sign's kept top contexts, ranked from 0, and their context ids and documents
    ([latents, top_k], -1 where not kept)."""
    order = torch.sort(buf.key, dim=1, descending=True, stable=True).indices
    sorted_key = torch.gather(buf.key, 1, order)
    position = torch.arange(buf.key.shape[1], device=buf.key.device).unsqueeze(0)
    kept = (sorted_key > EMPTY) & (position < keep.unsqueeze(1))
    lat, pos = kept.nonzero(as_tuple=True)
    slot = order[lat, pos]
    ctx = torch.where(kept, torch.gather(_context_ids(buf, seq_len), 1, order), -1)
    doc = torch.where(kept, torch.gather(_documents(buf), 1, order), -1)
    return _rows(lat, EXPLAIN, TOP, torch.full_like(lat, -1), pos, buf, slot), ctx, doc


def _quantiles(buf: KeyedBuffer, top_ctx, top_doc, sizes: SplitSizes, seq_len: int):
    """Quantile rows, the bins' edges, which reservoir slots were used, and the documents of each split's
    quantile contexts (split index -> [latents, capacity], -1 where none)."""
    L, cap = buf.key.shape
    device = buf.key.device
    n_q = sizes.n_quantiles
    eligible = (buf.key > EMPTY) & ~_isin_rows(_context_ids(buf, seq_len), top_ctx)
    remaining = eligible.sum(1, keepdim=True)
    # Rank the eligible contexts by |value| (ascending); the others sort last.
    magnitude = buf.value.abs()
    value = torch.where(eligible, magnitude, torch.tensor(float("inf"), device=device))
    by_value = torch.sort(value, dim=1, stable=True).indices
    rank = torch.empty_like(by_value)
    rank.scatter_(1, by_value, torch.arange(cap, device=device).expand(L, cap))
    quantile = torch.where(eligible, rank * n_q // remaining.clamp(min=1), n_q)
    # Lowest |value| of each bin (NaN for an empty bin), stored so that bin membership can be checked.
    edges = torch.full((L, n_q + 1), float("inf"), device=device)
    edges.scatter_reduce_(1, quantile, value, reduce="amin")
    edges = edges[:, :n_q]
    edges = torch.where(torch.isinf(edges), float("nan"), edges)
    quotas = split_quotas(
        remaining.squeeze(1), n_q, sizes.explain_per_quantile, sizes.test_per_quantile, sizes.validate_per_quantile
    )
    none = torch.zeros(L, 1, dtype=torch.int64, device=device)
    test_quota, validate_quota, explain_quota = (torch.cat([quota, none], 1) for quota in quotas)
    # Order by bin, then by priority within a bin.
    document = _documents(buf)
    priority = split_priority(sizes.seed, document, torch.arange(L, device=device).unsqueeze(1))
    by_priority = torch.sort(priority, dim=1, stable=True).indices
    by_bin = torch.sort(torch.gather(quantile, 1, by_priority), dim=1, stable=True).indices
    order = torch.gather(by_priority, 1, by_bin)
    sorted_bin = torch.gather(quantile, 1, order)
    sorted_doc = torch.gather(document, 1, order)
    # Test first: contexts whose document holds a top context cannot be tested.
    can_test = (sorted_bin < n_q) & ~_isin_rows(sorted_doc, top_doc)
    test = can_test & (_within_group(sorted_bin, can_test) < torch.gather(test_quota, 1, sorted_bin))
    test_doc = torch.where(test, sorted_doc, -1)
    # Then validate: neither a top context's document nor a test context's.
    can_validate = can_test & ~test & ~_isin_rows(sorted_doc, test_doc)
    validate = can_validate & (_within_group(sorted_bin, can_validate) < torch.gather(validate_quota, 1, sorted_bin))
    validate_doc = torch.where(validate, sorted_doc, -1)
    taken_doc = torch.cat([test_doc, validate_doc], dim=1)
    can_explain = (sorted_bin < n_q) & ~test & ~validate & ~_isin_rows(sorted_doc, taken_doc)
    explain = can_explain & (_within_group(sorted_bin, can_explain) < torch.gather(explain_quota, 1, sorted_bin))
    explain_doc = torch.where(explain, sorted_doc, -1)
    lat, pos = (test | validate | explain).nonzero(as_tuple=True)
    slot = order[lat, pos]
    split = torch.where(test[lat, pos], TEST, torch.where(validate[lat, pos], VALIDATE, EXPLAIN))
    rank_in_bin = _within_group(sorted_bin, torch.ones_like(test))[lat, pos]
    rows = _rows(lat, split, QUANTILE, sorted_bin[lat, pos], rank_in_bin, buf, slot)
    picked = torch.zeros_like(eligible)
    picked[lat, slot] = True
    return rows, edges.cpu().numpy(), picked, {EXPLAIN: explain_doc, TEST: test_doc, VALIDATE: validate_doc}


def _negatives(sampler: StreamingSampler, picked, docs: dict[int, torch.Tensor], sizes: SplitSizes):
    """Rows of the negatives: clean non-activating windows in hash order, then (with ``weak_negatives``)
    the unused reservoir contexts, weakest first; test first, then validate, then explain, each document
    kept to one split (``docs``: each split's documents of activating contexts)."""
    clean = sampler.negatives
    order = torch.sort(clean.key, dim=1, descending=True, stable=True).indices
    candidates = [(clean, order, torch.gather(clean.key, 1, order) > EMPTY, RANDOM)]
    if sizes.weak_negatives:
        res = sampler.reservoir
        unused = (res.key > EMPTY) & ~picked
        weakest = torch.sort(torch.where(unused, res.value.abs(), float("inf")), dim=1, stable=True).indices
        candidates.append((res, weakest, torch.gather(unused, 1, weakest), WEAK))
    valid = torch.cat([c[2] for c in candidates], dim=1)
    document = torch.cat([torch.gather(_documents(buf), 1, o) for buf, o, _, _ in candidates], dim=1)
    group = torch.zeros_like(document)
    chosen = {}
    free = valid
    for split, quota in ((TEST, sizes.random_test), (VALIDATE, sizes.random_validate), (EXPLAIN, sizes.random_explain)):
        # documents this split may not use: the other splits' activating contexts and earlier negatives
        other = [d for s, d in docs.items() if s != split] + [torch.where(c, document, -1) for c in chosen.values()]
        can = free & ~_isin_rows(document, torch.cat(other, dim=1))
        chosen[split] = can & (_within_group(group, can) < quota)
        free = free & ~chosen[split]
    rank = _within_group(group, valid)
    split_of = torch.where(chosen[TEST], TEST, torch.where(chosen[VALIDATE], VALIDATE, EXPLAIN))
    any_chosen = chosen[TEST] | chosen[VALIDATE] | chosen[EXPLAIN]
    rows, offset = [], 0
    for buf, o, _, kind in candidates:
        width = o.shape[1]
        lat, pos = any_chosen[:, offset : offset + width].nonzero(as_tuple=True)
        split = split_of[:, offset : offset + width][lat, pos]
        r = rank[:, offset : offset + width][lat, pos]
        rows.append(_rows(lat, split, kind, torch.full_like(lat, -1), r, buf, o[lat, pos], with_acts=kind == WEAK))
        offset += width
    return rows
