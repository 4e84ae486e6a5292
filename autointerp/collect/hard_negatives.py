"""Hard negatives: non-activating windows that look like a latent's activating contexts (kind 'hard').

After the collect's pass, a bounded **pool** of ``hard_pool`` windows runs through the collect's model
and dictionary once more (``pool_windows``: the non-overlapping tiles of whole batches picked by the
seeded hash, so only those batches run again, cut exactly as the first pass cut them, and the
activations are the collect's own, full sequence context included). Of each pool window we keep every
latent's peak magnitude over its counted positions ([pool, latents]): a latent is silent on a window
when that is 0, exactly as its random negatives are defined.

Each latent with status ok gets up to ``hard_negatives`` windows, chosen among the pool windows it is
silent on:

* **meaning**: nearest, by cosine under the offline sentence encoder, to the mean (re-normalised) of
  the embeddings of the latent's explain-set activating contexts (its first ``MEANING_CONTEXTS``: the
  top contexts, then quantile ones; this bounds the embedding cost at latents x 8 excerpts);
  ``similarity`` = that cosine.
* **neighbours** (delphi's neighbour idea): windows where one of the latent's ``NEIGHBOURS`` nearest
  latents by decoder cosine fires strongly. A window's score is the largest ``cos(l, j) x peak_j(w) /
  max_w' peak_j(w')`` over those neighbours j; ``similarity`` = the decoder cosine of that neighbour.

The count is shared between the chosen ways in order (the first takes the odd one); a way that finds
too few leaves its share to the next. A window becomes at most one hard negative of a latent, and never
one that is already another of its examples.

**Splits**: by the document rule of ``select.py``: a window whose document already holds one of the
latent's contexts joins that split; any other goes to the test, validate or explain set in the
proportions random_test : random_validate : random_explain, by a hash of (seed, document, latent), so
every window of one document goes the same way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..config import CollectConfig
from ..errors import AutointerpError
from ..hashing import hash62
from ..models.dictionaries.planted import planted_part
from ..models.neighbours import nearest_by_cosine
from .select import EXPLAIN, HARD, QUANTILE, TEST, TOP, VALIDATE, Selection
from .stream import _batches, encode_batch, n_sequences

SALT_HARD_POOL = 6
SALT_HARD_SPLIT = 7
NEIGHBOURS = 8  # decoder neighbours per latent whose firing marks a neighbour hard negative
MEANING_CONTEXTS = 8  # activating contexts per latent whose embeddings' mean stands for it (its top ones)
LATENT_CHUNK = 256  # latents at a time through the [pool, chunk] similarity matrices


@dataclass
class HardRequest:
    """What the pass needs from the selection: every chosen row's latent, split, kind, document and
    context id, and the token ids of the explain-set activating rows (``meaning`` embeds them)."""

    n: int
    pool: int
    by: tuple[str, ...]
    latent: np.ndarray
    split: np.ndarray
    document: np.ndarray
    context_id: np.ndarray
    explain_positive: np.ndarray  # bool [rows]: explain-set top or quantile row of a wanted latent
    tokens: np.ndarray  # [explain_positive rows, window]
    wanted: np.ndarray  # bool [latents]: the latents that get hard negatives

    @classmethod
    def of(cls, selection: Selection, config: CollectConfig, wanted: np.ndarray) -> HardRequest:
        """``wanted``: the latents to find hard negatives for (those with status ok: the others are never
        explained or scored)."""
        positive = ((selection.kind == TOP) | (selection.kind == QUANTILE)) & (selection.split == EXPLAIN)
        positive &= wanted[selection.latent]
        # the first MEANING_CONTEXTS of each latent in selection order: its top contexts first
        rows = np.nonzero(positive)[0]
        positive[rows[_rank_within(selection.latent[rows].astype(np.int64)) >= MEANING_CONTEXTS]] = False
        return cls(
            n=config.hard_negatives,
            pool=config.hard_pool,
            by=tuple(config.hard_by_list()),
            latent=selection.latent.astype(np.int64),
            split=selection.split.astype(np.int8),
            document=selection.document.astype(np.int64),
            context_id=selection.sequence.astype(np.int64) * config.seq_len + selection.start.astype(np.int64),
            explain_positive=positive,
            tokens=selection.tokens[positive],
            wanted=wanted,
        )


@dataclass
class Pool:
    """The candidate windows: sequence, start, document (of the window's middle), token ids and every
    latent's peak magnitude on it over counted positions ([windows, latents])."""

    sequence: np.ndarray
    start: np.ndarray
    document: np.ndarray
    tokens: np.ndarray
    peak: np.ndarray


def pool_windows(config: CollectConfig, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(sequence, start) of the pool's windows: the non-overlapping tiles of the sequences of whole
    batches taken in seeded-hash order until ``size`` windows are reached (fewer if the collect is
    smaller), so that only those batches run again."""
    total = n_sequences(config)
    tiles = config.seq_len // config.window
    n_batches = math.ceil(total / config.batch_size)
    order = torch.argsort(hash62(config.seed, torch.arange(n_batches), SALT_HARD_POOL)).numpy()
    needed = math.ceil(size / tiles)
    sequences: list[np.ndarray] = []
    have = 0
    for batch in order:
        first = int(batch) * config.batch_size
        seqs = np.arange(first, min(first + config.batch_size, total))
        sequences.append(seqs[: needed - have])
        have += len(sequences[-1])
        if have >= needed:
            break
    seqs = np.sort(np.concatenate(sequences))
    sequence = np.repeat(seqs, tiles)
    start = np.tile(np.arange(tiles, dtype=np.int64) * config.window, len(seqs))
    return sequence[:size], start[:size]


def run_pool(loaded, size: int) -> Pool:
    """Run the batches holding the pool's windows through the collect's model and dictionary."""
    config, subject, dictionary = loaded.config, loaded.subject, loaded.dictionary
    sequence, start = pool_windows(config, size)
    window = config.window
    tokens = np.zeros((len(sequence), window), dtype=np.int32)
    document = np.zeros(len(sequence), dtype=np.int64)
    peak = np.zeros((len(sequence), int(dictionary.d_sae)), dtype=np.float32)
    wanted = set((sequence // config.batch_size).tolist())
    last = min((max(wanted) + 1) * config.batch_size, n_sequences(config))
    device = subject.device
    special = torch.tensor(subject.special_token_ids(), dtype=torch.int64, device=device)
    offsets = torch.arange(window, device=device)
    first = 0
    with torch.inference_mode():
        for ids, documents in _batches(config, subject, loaded.corpus, 0, last):
            if first // config.batch_size in wanted:
                ids = ids.to(device)
                acts, counted = encode_batch(config, subject, dictionary, ids, special)
                lo, hi = np.searchsorted(sequence, [first, first + ids.shape[0]])
                b = torch.from_numpy(sequence[lo:hi] - first).to(device).unsqueeze(1)
                pos = torch.from_numpy(start[lo:hi]).to(device).unsqueeze(1) + offsets
                magnitude = torch.where(counted[b, pos].unsqueeze(-1), acts[b, pos].abs(), 0)
                peak[lo:hi] = magnitude.amax(dim=1).float().cpu().numpy()
                tokens[lo:hi] = ids[b, pos].to(torch.int32).cpu().numpy()
                middle = torch.from_numpy(start[lo:hi] + window // 2)
                document[lo:hi] = documents[b.cpu().squeeze(1), middle].numpy()
            first += ids.shape[0]
    return Pool(sequence, start, document, tokens, peak)


def window_texts(tokenizer, tokens: np.ndarray, special: set[int]) -> list[str]:
    """Each window's text as the sentence encoder reads it (special tokens left out)."""
    return tokenizer.batch_decode([[int(t) for t in row if int(t) not in special] for row in tokens])


def by_meaning(loaded, request: HardRequest, pool: Pool, allowed: np.ndarray, encoder=None):
    """([latents, n] pool indices, [latents, n] cosines), -1 / NaN where fewer windows qualify."""
    from ..models.sentence_encoder import SentenceEncoder

    n_latents = allowed.shape[1]
    if not request.explain_positive.any():  # no wanted latent has an activating explain context
        return np.full((n_latents, request.n), -1, dtype=np.int64), np.full((n_latents, request.n), np.nan)
    encoder = encoder or SentenceEncoder()
    tokenizer, special = loaded.subject.tokenizer, set(loaded.subject.special_token_ids())
    pool_vectors = encoder.embed(window_texts(tokenizer, pool.tokens, special))
    ids = request.context_id[request.explain_positive]
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    vectors = encoder.embed(window_texts(tokenizer, request.tokens[first], special))[inverse]
    means = np.zeros((n_latents, vectors.shape[1]), dtype=np.float32)
    np.add.at(means, request.latent[request.explain_positive], vectors)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    means = np.divide(means, norms, out=np.zeros_like(means), where=norms > 0)
    scores = means @ pool_vectors.T  # [latents, pool]: the pool bounds it
    scores[(norms[:, 0] == 0)] = -np.inf
    return _top(np.where(allowed.T, scores, -np.inf), request.n, scores)


def by_neighbours(loaded, request: HardRequest, pool: Pool, allowed: np.ndarray):
    """([latents, n] pool indices, [latents, n] decoder cosines of the neighbour that fired), or None
    when the dictionary has no decoder directions."""
    dictionary = loaded.dictionary
    planted = planted_part(dictionary)
    base = getattr(dictionary, "base", dictionary) if planted else dictionary
    try:
        directions = base.decoder_directions().float().cpu()
    except (AutointerpError, NotImplementedError):
        return None
    n_latents = allowed.shape[1]
    n_base = int(directions.shape[0])
    k = min(NEIGHBOURS, n_base - 1)
    if k < 1:
        return None
    found = nearest_by_cosine(directions, k=k, exclude_self=True)
    neighbour_index, neighbour_cos = np.asarray(found.indices), np.asarray(found.cosines)
    strongest = pool.peak.max(axis=0)
    relative = np.divide(pool.peak, strongest, out=np.zeros_like(pool.peak), where=strongest > 0)[:, :n_base]
    index = np.full((n_latents, request.n), -1, dtype=np.int64)
    cosine = np.full((n_latents, request.n), np.nan)
    for lo in range(0, n_base, LATENT_CHUNK):
        hi = min(lo + LATENT_CHUNK, n_base)
        nb = neighbour_index[lo:hi]  # [c, k]
        cos = np.clip(neighbour_cos[lo:hi], 0, None)  # an anti-aligned neighbour is not a look-alike
        weighted = relative[:, nb] * cos[None]  # [pool, c, k]
        best = weighted.argmax(axis=2)  # [pool, c]
        score = np.take_along_axis(weighted, best[..., None], axis=2)[..., 0].T  # [c, pool]
        score = np.where(allowed[:, lo:hi].T & (score > 0), score, -np.inf)
        chosen, _ = _top(score, request.n, score)
        index[lo:hi] = chosen
        which = np.take_along_axis(best.T, np.maximum(chosen, 0), axis=1)  # [c, n]
        cosine[lo:hi] = np.where(chosen >= 0, np.take_along_axis(cos, which, axis=1), np.nan)
    return index, cosine


def _top(masked: np.ndarray, n: int, values: np.ndarray):
    """Per row, the ``n`` columns with the highest finite ``masked`` score (-1 past the last) and their
    ``values``."""
    n = min(n, masked.shape[1])
    order = np.argsort(-masked, axis=1, kind="stable")[:, :n]
    ok = np.isfinite(np.take_along_axis(masked, order, axis=1))
    return np.where(ok, order, -1), np.where(ok, np.take_along_axis(values, order, axis=1), np.nan)


def combine(request: HardRequest, found: dict[str, tuple[np.ndarray, np.ndarray]]):
    """(latent, pool index, similarity, way) of each hard negative: each way's share in order, a way's
    shortfall left to the next, a window once per latent."""
    ways = [w for w in request.by if w in found]
    n_latents = next(iter(found.values()))[0].shape[0] if found else 0
    rows: list[tuple[int, int, float, str]] = []
    for lat in range(n_latents):
        taken: set[int] = set()
        left = request.n
        for i, way in enumerate(ways):
            share = left if i == len(ways) - 1 else min(left, math.ceil(left / (len(ways) - i)))
            index, sim = found[way][0][lat], found[way][1][lat]
            for w, s in zip(index.tolist(), sim.tolist(), strict=True):
                if share == 0:
                    break
                if w >= 0 and w not in taken:
                    taken.add(w)
                    rows.append((lat, w, s, way))
                    share -= 1
                    left -= 1
    return rows


def assign_splits(
    request: HardRequest,
    latent: np.ndarray,
    document: np.ndarray,
    seed: int,
    test_share: float,
    validate_share: float = 0.0,
):
    """The split of each hard negative (``select.EXPLAIN``, ``TEST`` or ``VALIDATE``) by the document rule:
    a new document goes to test with probability ``test_share``, to validate with ``validate_share``."""
    draw = hash62(seed, torch.from_numpy(np.maximum(document, 0)), torch.from_numpy(latent), SALT_HARD_SPLIT)
    u = (draw % 1_000_000).numpy()
    split = np.where(
        u < test_share * 1_000_000, TEST, np.where(u < (test_share + validate_share) * 1_000_000, VALIDATE, EXPLAIN)
    ).astype(np.int8)
    # a (latent, document) pair that already has a split keeps it: looked up in the sorted stored pairs
    stored = (request.latent << 32) | (request.document + 1)
    order = np.argsort(stored, kind="stable")
    keys = stored[order]
    query = (latent << 32) | (document + 1)
    at = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    known = (keys[at] == query) if len(keys) else np.zeros(len(query), dtype=bool)
    split[known] = request.split[order][at[known]]
    return split


def find_hard_negatives(loaded, request: HardRequest) -> tuple[dict[str, np.ndarray], dict]:
    """The hard negatives' rows (``Selection`` fields plus ``similarity`` and ``hard_by``) and what the
    pass cost; called where the collect's model is loaded (``setup.Loaded``)."""
    config = loaded.config
    started = time.perf_counter()
    pool = run_pool(loaded, request.pool)
    allowed = (pool.peak == 0) & request.wanted  # [pool, latents]: silent at every counted position
    pool_ids = pool.sequence * config.seq_len + pool.start
    # a window already among a latent's examples is not offered to it again
    at = {int(c): w for w, c in enumerate(pool_ids.tolist())}
    for lat, cid in zip(request.latent.tolist(), request.context_id.tolist(), strict=True):
        if cid in at:
            allowed[at[cid], lat] = False
    pass_seconds = time.perf_counter() - started
    found = {}
    notes = []
    if "meaning" in request.by:
        found["meaning"] = by_meaning(loaded, request, pool, allowed)
    if "neighbours" in request.by:
        neighbours = by_neighbours(loaded, request, pool, allowed)
        if neighbours is None:
            notes.append("no decoder directions: no neighbour hard negatives")
        else:
            found["neighbours"] = neighbours
    chosen = combine(request, found)
    latent = np.array([r[0] for r in chosen], dtype=np.int64)
    window = np.array([r[1] for r in chosen], dtype=np.int64)
    n = len(chosen)
    need = config.random_test + config.random_validate + config.random_explain
    test_share = config.random_test / need if need else 1.0
    validate_share = config.random_validate / need if need else 0.0
    split = assign_splits(request, latent, pool.document[window], config.seed, test_share, validate_share)
    rank = _rank_within(latent * 3 + split)
    rows = {
        "latent": latent.astype(np.int32),
        "split": split,
        "kind": np.full(n, HARD, dtype=np.int8),
        "quantile": np.full(n, -1, dtype=np.int16),
        "rank": rank,
        "sequence": pool.sequence[window],
        "start": pool.start[window],
        "max_activation": np.zeros(n, dtype=np.float32),
        "document": pool.document[window],
        "tokens": pool.tokens[window].reshape(n, config.window),
        "activations": np.zeros((n, config.window), dtype=np.float32),
        "similarity": np.array([r[2] for r in chosen], dtype=np.float64),
        "hard_by": np.array([r[3] for r in chosen], dtype=object),
    }
    cost = {
        "pool": len(pool.sequence),
        "rows": n,
        "by": {way: int(sum(r[3] == way for r in chosen)) for way in request.by},
        "pass_seconds": round(pass_seconds, 2),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if notes:
        cost["notes"] = notes
    return rows, cost


def _rank_within(group: np.ndarray) -> np.ndarray:
    """Each row's position among the earlier rows of its group (the order chosen)."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.searchsorted(sorted_group, sorted_group)
    rank = np.empty(len(group), dtype=np.int32)
    rank[order] = np.arange(len(group)) - starts
    return rank


def with_hard_negatives(selection: Selection, rows: dict[str, np.ndarray]) -> Selection:
    """``selection`` with the hard negatives' rows appended (``similarity`` and ``hard_by`` NaN / None
    on the other rows)."""
    n_old = len(selection.latent)
    fields = {}
    for name in ("latent", "split", "kind", "quantile", "rank", "sequence", "start", "max_activation", "document"):
        old = getattr(selection, name)
        fields[name] = np.concatenate([old, rows[name].astype(old.dtype)])
    fields["tokens"] = np.concatenate([selection.tokens, rows["tokens"].astype(selection.tokens.dtype)])
    fields["activations"] = np.concatenate([selection.activations, rows["activations"]])
    fields["similarity"] = np.concatenate([np.full(n_old, np.nan), rows["similarity"]])
    fields["hard_by"] = np.concatenate([np.full(n_old, None, dtype=object), rows["hard_by"]])
    return Selection(quantile_edges=selection.quantile_edges, **fields)
