"""The streaming sampler against a brute-force reference on small random activations."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch

from autointerp.collect.sampler import (
    SALT_NEGATIVE,
    SALT_NEGATIVE_START,
    SALT_RESERVOIR,
    SamplerSizes,
    StreamingSampler,
    histogram_edges,
)
from autointerp.collect.select import SplitSizes, select_examples
from autointerp.collect.split_rule import bin_quotas
from autointerp.hashing import hash62

N_SEQ, T, L, W, OFFSET = 90, 24, 9, 6, 4
SEED = 7


def random_activations(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Latents with different firing rates, including one that never fires and one that fires often.
    rates = torch.tensor([0.0, 0.002, 0.01, 0.03, 0.05, 0.1, 0.2, 0.5, 0.9])
    fires = torch.rand(N_SEQ, T, L, generator=g) < rates
    acts = torch.rand(N_SEQ, T, L, generator=g) * 10 * fires
    tokens = torch.randint(3, 1000, (N_SEQ, T), generator=g)
    return acts, tokens


def run_sampler_range(
    acts, tokens, lo, hi, batch, top_k=5, reservoir=40, negatives=12, seed=SEED, signed=False
) -> StreamingSampler:
    """A sampler fed sequences lo .. hi - 1 in batches, not yet finished (a shard)."""
    sizes = SamplerSizes(
        n_latents=L,
        seq_len=T,
        window=W,
        peak_offset=OFFSET,
        top_k=top_k,
        reservoir=reservoir,
        negatives=negatives,
        histogram_bins=12,
        seed=seed,
        signed=signed,
    )
    sampler = StreamingSampler(sizes, torch.device("cpu"))
    counted = torch.ones(N_SEQ, T, dtype=torch.bool)
    counted[:, 0] = False
    for i in range(lo, hi, batch):
        sl = slice(i, min(i + batch, hi))
        sampler.update(acts[sl].clone(), tokens[sl], counted[sl], torch.arange(N_SEQ)[sl])
    return sampler


def run_sampler(acts, tokens, batch: int, **sizes) -> StreamingSampler:
    sampler = run_sampler_range(acts, tokens, 0, N_SEQ, batch, **sizes)
    sampler.finish()
    return sampler


def split_sizes(seed=SEED, n_quantiles=4) -> SplitSizes:
    return SplitSizes(
        n_quantiles=n_quantiles, explain_per_quantile=2, test_per_quantile=3, random_explain=3, random_test=6, seed=seed
    )


def kept_top(n_active: int, sides: int = 1, n_quantiles: int = 4) -> int:
    """Top contexts kept per sign by the split rule at split_sizes() and top_k 5 (split_rule.top_quota)."""
    return min(5, n_active * 5 // (sides * 5 + n_quantiles * 5))


@pytest.fixture(scope="module")
def data():
    acts, tokens = random_activations()
    masked = acts.clone()
    masked[:, 0] = 0
    seq_max, peak = masked.max(dim=1)  # [N_SEQ, L]
    start = (peak - OFFSET).clamp(0, T - W)
    return acts, tokens, masked, seq_max, start


def rows_of(sel, latent, kind=None, split=None):
    m = sel.latent == latent
    if kind is not None:
        m &= sel.kind == kind
    if split is not None:
        m &= sel.split == split
    return np.nonzero(m)[0]


def test_statistics_match_brute_force(data):
    acts, tokens, masked, seq_max, _ = data
    s = run_sampler(acts, tokens, batch=7)
    assert s.n_tokens == N_SEQ * (T - 1)
    assert torch.equal(s.n_firing, (masked > 0).sum((0, 1)))
    assert torch.allclose(s.max_activation, masked.amax((0, 1)))
    assert torch.allclose(s.sum_activation.float(), masked.sum((0, 1)), rtol=1e-5)
    assert torch.equal(s.n_active_contexts, (seq_max > 0).sum(0))
    assert torch.equal(s.histogram.sum(1), s.n_firing)
    edges = histogram_edges(12).float()
    for lat in range(L):
        v = masked[..., lat][masked[..., lat] > 0]
        expected = torch.bincount(torch.bucketize(v, edges, right=True), minlength=14)
        assert torch.equal(s.histogram[lat], expected)


def test_top_k_exact_with_windows(data):
    acts, tokens, masked, seq_max, start = data
    sel = select_examples(run_sampler(acts, tokens, batch=7), split_sizes())
    for lat in range(L):
        rows = rows_of(sel, lat, kind=0)
        active = torch.nonzero(seq_max[:, lat] > 0).flatten()
        expected = active[torch.argsort(seq_max[active, lat], descending=True)][: kept_top(len(active))]
        assert sel.sequence[rows].tolist() == expected.tolist()
        for r in rows:
            seq, st = int(sel.sequence[r]), int(sel.start[r])
            assert st == int(start[seq, lat])
            assert np.allclose(sel.activations[r], masked[seq, st : st + W, lat].numpy())
            assert sel.tokens[r].tolist() == tokens[seq, st : st + W].tolist()
            assert sel.max_activation[r] == pytest.approx(float(seq_max[seq, lat]))
            assert sel.split[r] == 0  # top contexts explain


def test_reservoir_is_the_largest_hash_keys(data):
    acts, tokens, _, seq_max, _ = data
    s = run_sampler(acts, tokens, batch=11, reservoir=10)
    for lat in range(L):
        active = torch.nonzero(seq_max[:, lat] > 0).flatten()
        keys = hash62(SEED, active, lat, SALT_RESERVOIR)
        expected = set(active[torch.argsort(keys, descending=True)][:10].tolist())
        kept = set(s.reservoir.sequence[lat][s.reservoir.key[lat] >= 0].tolist())
        assert kept == expected


@pytest.mark.parametrize("n_q", [4, 10])
def test_quantile_membership_exact_when_reservoir_holds_all(data, n_q):
    acts, tokens, _, seq_max, _ = data
    sel = select_examples(run_sampler(acts, tokens, batch=5, reservoir=N_SEQ), split_sizes(n_quantiles=n_q))
    for lat in range(L):
        active = torch.nonzero(seq_max[:, lat] > 0).flatten()
        top_seqs = set(sel.sequence[rows_of(sel, lat, kind=0)].tolist())
        # Bins are cut after the kept top contexts are taken out.
        ranked = [seq for seq in active[torch.argsort(seq_max[active, lat])].tolist() if seq not in top_seqs]
        m = len(ranked)
        bin_of = {seq: rank * n_q // m for rank, seq in enumerate(ranked)}
        for r in rows_of(sel, lat, kind=1):
            assert sel.quantile[r] == bin_of[int(sel.sequence[r])]
        # The stored lower edges are the smallest value of each bin.
        for q in range(n_q):
            members = [seq_max[seq, lat].item() for seq in ranked if bin_of[seq] == q]
            if members:
                assert sel.quantile_edges[lat, q] == pytest.approx(min(members))
            else:
                assert np.isnan(sel.quantile_edges[lat, q])
        # Each bin gives its quota (full bins: 3 test + 2 explain), the test set filled first.
        test_quota, explain_quota = bin_quotas(torch.tensor([m]), n_q, 2, 3)
        for q in range(n_q):
            available = [seq for seq in ranked if bin_of[seq] == q]
            got = rows_of(sel, lat, kind=1)[sel.quantile[rows_of(sel, lat, kind=1)] == q]
            n_test = int((sel.split[got] == 1).sum())
            assert n_test == int(test_quota[0, q])
            if len(available) >= 5:
                assert n_test == 3
            assert len(got) == int(test_quota[0, q] + explain_quota[0, q]) == min(5, len(available))


def test_negatives_match_brute_force(data):
    acts, tokens, masked, seq_max, start = data
    s = run_sampler(acts, tokens, batch=4, negatives=12)
    seqs = torch.arange(N_SEQ)
    neg_start = hash62(SEED, seqs, SALT_NEGATIVE_START) % (T - W + 1)
    for lat in range(L):
        ok = []
        for seq in range(N_SEQ):
            st = int(neg_start[seq])
            zero = masked[seq, st : st + W, lat].max() == 0
            apart = seq_max[seq, lat] == 0 or abs(int(start[seq, lat]) - st) >= W
            if zero and apart:
                ok.append(seq)
        ok = torch.tensor(ok, dtype=torch.int64)
        keys = hash62(SEED, ok, lat, SALT_NEGATIVE) if len(ok) else torch.empty(0, dtype=torch.int64)
        expected = set(ok[torch.argsort(keys, descending=True)][:12].tolist())
        kept = set(s.negatives.sequence[lat][s.negatives.key[lat] >= 0].tolist())
        assert kept == expected
        for slot in range(12):
            if s.negatives.key[lat, slot] >= 0:
                seq, st = int(s.negatives.sequence[lat, slot]), int(s.negatives.start[lat, slot])
                assert masked[seq, st : st + W, lat].max() == 0
                assert s.negatives.tokens[lat, slot].tolist() == tokens[seq, st : st + W].tolist()


def test_explain_and_test_sets_share_no_token(data):
    acts, tokens, *_ = data
    sel = select_examples(run_sampler(acts, tokens, batch=9, reservoir=30), split_sizes())
    assert len(sel.latent) > 0
    for lat in range(L):
        spans = {0: set(), 1: set()}
        for r in rows_of(sel, lat):
            positions = {(int(sel.sequence[r]), int(sel.start[r]) + i) for i in range(W)}
            split = int(sel.split[r])
            assert not positions & spans[1 - split], f"latent {lat}: explain and test overlap"
            assert not positions & spans[split], f"latent {lat}: two contexts of one split overlap"
            spans[split] |= positions


def test_same_seed_same_result_any_batch_size(data):
    acts, tokens, *_ = data
    a = select_examples(run_sampler(acts, tokens, batch=3, reservoir=20), split_sizes())
    b = select_examples(run_sampler(acts, tokens, batch=17, reservoir=20), split_sizes())
    for field in ("latent", "split", "kind", "quantile", "sequence", "start", "tokens", "activations"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    c = select_examples(run_sampler(acts, tokens, batch=3, reservoir=20, seed=8), split_sizes(seed=8))
    assert not np.array_equal(a.sequence, c.sequence)


def test_dead_latent_has_no_examples(data):
    acts, tokens, *_ = data
    sel = select_examples(run_sampler(acts, tokens, batch=7), split_sizes())
    assert len(rows_of(sel, 0, kind=0)) == 0 and len(rows_of(sel, 0, kind=1)) == 0
    assert len(rows_of(sel, 0, kind=2)) == 9  # negatives: 6 test + 3 explain


# ----------------------------------------------------------------------------------------------- signed latents
# AbsTopK SAEs and MLP neurons: ranked by |activation|, "fires" means != 0, top contexts for both signs.


def signed_activations(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    acts, tokens = random_activations(seed)
    g = torch.Generator().manual_seed(seed + 100)
    sign = torch.where(torch.rand(acts.shape, generator=g) < 0.5, -1.0, 1.0)
    sign[..., 1] = -1.0  # a latent that is only ever negative
    sign[..., 2] = 1.0  # and one only ever positive
    return acts * sign, tokens


@pytest.fixture(scope="module")
def signed():
    acts, tokens = signed_activations()
    masked = acts.clone()
    masked[:, 0] = 0
    seq_mag, peak = masked.abs().max(dim=1)  # [N_SEQ, L]
    seq_val = masked.gather(1, peak.unsqueeze(1)).squeeze(1)  # the signed value at the peak
    start = (peak - OFFSET).clamp(0, T - W)
    return acts, tokens, masked, seq_mag, seq_val, start


def test_signed_statistics_are_of_the_magnitude(signed):
    acts, tokens, masked, seq_mag, _, _ = signed
    s = run_sampler(acts, tokens, batch=7, signed=True)
    assert torch.equal(s.n_firing, (masked != 0).sum((0, 1)))
    assert torch.allclose(s.max_activation, masked.abs().amax((0, 1)))
    assert torch.allclose(s.sum_activation.float(), masked.abs().sum((0, 1)), rtol=1e-5)
    assert torch.equal(s.n_active_contexts, (seq_mag > 0).sum(0))
    edges = histogram_edges(12).float()
    for lat in range(L):
        v = masked[..., lat][masked[..., lat] != 0].abs()
        assert torch.equal(s.histogram[lat], torch.bincount(torch.bucketize(v, edges, right=True), minlength=14))


def test_signed_top_contexts_of_both_signs(signed):
    acts, tokens, masked, seq_mag, seq_val, start = signed
    sel = select_examples(run_sampler(acts, tokens, batch=7, signed=True), split_sizes())
    n_negative = 0
    for lat in range(L):
        rows = rows_of(sel, lat, kind=0)
        got_sides = []
        for side in (1, -1):
            candidates = torch.nonzero((seq_mag[:, lat] > 0) & (torch.sign(seq_val[:, lat]) == side)).flatten()
            n_sides = sum(bool(((seq_mag[:, lat] > 0) & (torch.sign(seq_val[:, lat]) == sd)).any()) for sd in (1, -1))
            keep = kept_top(int((seq_mag[:, lat] > 0).sum()), sides=n_sides)
            expected = candidates[torch.argsort(seq_mag[candidates, lat], descending=True)][:keep]
            side_rows = rows[np.sign(sel.max_activation[rows]) == side]
            assert sel.sequence[side_rows].tolist() == expected.tolist(), (lat, side)
            assert sel.rank[side_rows].tolist() == list(range(len(expected)))
            got_sides += [side] * len(side_rows)
            for r in side_rows:
                seq, st = int(sel.sequence[r]), int(sel.start[r])
                assert st == int(start[seq, lat])
                assert np.allclose(sel.activations[r], masked[seq, st : st + W, lat].numpy())
                assert sel.max_activation[r] == pytest.approx(float(seq_val[seq, lat]))
                assert sel.split[r] == 0
        assert np.sign(sel.max_activation[rows]).tolist() == got_sides  # positive side first
        n_negative += int((sel.max_activation[rows] < 0).sum())
    assert n_negative > 0
    assert (sel.max_activation[rows_of(sel, 2, kind=0)] > 0).all()  # only-positive latent
    assert (sel.max_activation[rows_of(sel, 1, kind=0)] < 0).all()  # only-negative latent


@pytest.mark.parametrize("n_q", [4, 10])
def test_signed_quantiles_are_of_the_magnitude(signed, n_q):
    acts, tokens, _, seq_mag, seq_val, _ = signed
    sel = select_examples(
        run_sampler(acts, tokens, batch=5, reservoir=N_SEQ, signed=True), split_sizes(n_quantiles=n_q)
    )
    for lat in range(L):
        active = torch.nonzero(seq_mag[:, lat] > 0).flatten()
        ranked = active[torch.argsort(seq_mag[active, lat])].tolist()
        top_seqs = set(sel.sequence[rows_of(sel, lat, kind=0)].tolist())
        ranked = [seq for seq in ranked if seq not in top_seqs]  # bins are cut after the top contexts
        m = len(ranked)
        bin_of = {seq: rank * n_q // m for rank, seq in enumerate(ranked)}
        for r in rows_of(sel, lat, kind=1):
            seq = int(sel.sequence[r])
            assert sel.quantile[r] == bin_of[seq] and seq not in top_seqs
            assert sel.max_activation[r] == pytest.approx(float(seq_val[seq, lat]))  # signed
        for q in range(n_q):
            members = [seq_mag[seq, lat].item() for seq in ranked if bin_of[seq] == q]
            if members:
                assert sel.quantile_edges[lat, q] == pytest.approx(min(members))
            else:
                assert np.isnan(sel.quantile_edges[lat, q])


def test_signed_negatives_are_zero_windows(signed):
    acts, tokens, masked, seq_mag, _, start = signed
    s = run_sampler(acts, tokens, batch=4, negatives=12, signed=True)
    neg_start = hash62(SEED, torch.arange(N_SEQ), SALT_NEGATIVE_START) % (T - W + 1)
    for lat in range(L):
        ok = [
            seq
            for seq in range(N_SEQ)
            if masked[seq, int(neg_start[seq]) : int(neg_start[seq]) + W, lat].abs().max() == 0
            and (seq_mag[seq, lat] == 0 or abs(int(start[seq, lat]) - int(neg_start[seq])) >= W)
        ]
        ok = torch.tensor(ok, dtype=torch.int64)
        keys = hash62(SEED, ok, lat, SALT_NEGATIVE) if len(ok) else torch.empty(0, dtype=torch.int64)
        expected = set(ok[torch.argsort(keys, descending=True)][:12].tolist())
        assert set(s.negatives.sequence[lat][s.negatives.key[lat] >= 0].tolist()) == expected


def test_signed_sets_are_disjoint_and_do_not_depend_on_batch_size(signed):
    acts, tokens, *_ = signed
    a = select_examples(run_sampler(acts, tokens, batch=3, reservoir=20, signed=True), split_sizes())
    b = select_examples(run_sampler(acts, tokens, batch=17, reservoir=20, signed=True), split_sizes())
    for field in ("latent", "split", "kind", "quantile", "rank", "sequence", "start", "tokens", "activations"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    for lat in range(L):
        spans = {0: set(), 1: set()}
        for r in rows_of(a, lat):
            positions = {(int(a.sequence[r]), int(a.start[r]) + i) for i in range(W)}
            split = int(a.split[r])
            assert not positions & spans[1 - split] and not positions & spans[split], lat
            spans[split] |= positions


def test_signed_sampler_on_non_negative_activations_is_the_unsigned_one(data):
    acts, tokens, *_ = data
    a = select_examples(run_sampler(acts, tokens, batch=7, reservoir=20), split_sizes())
    b = select_examples(run_sampler(acts, tokens, batch=7, reservoir=20, signed=True), split_sizes())
    for field in (
        "latent",
        "split",
        "kind",
        "quantile",
        "rank",
        "sequence",
        "start",
        "max_activation",
        "tokens",
        "activations",
        "quantile_edges",
    ):
        assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=field == "quantile_edges"), field


def _sharded(acts, tokens, bounds, batch, signed=False, **sizes_kw) -> StreamingSampler:
    """One sampler per sequence range, merged into a fresh one in reverse order (order must not matter)."""
    states = []
    for lo, hi in pairwise(bounds):
        shard = run_sampler_range(acts, tokens, lo, hi, batch, signed=signed, **sizes_kw)
        states.append(shard.state())
    merged = run_sampler_range(acts, tokens, 0, 0, batch, signed=signed, **sizes_kw)
    for state in reversed(states):
        merged.absorb(state)
    merged.finish()
    return merged


@pytest.mark.parametrize("signed", [False, True])
def test_merged_shards_equal_one_pass_even_with_ties(signed):
    acts, tokens = random_activations(seed=3)
    # A coarse grid makes many sequences tie on their maximum (bf16 activations tie often too).
    acts = torch.round(acts * 2) / 2
    if signed:
        acts = acts * torch.where(torch.rand(acts.shape, generator=torch.Generator().manual_seed(1)) < 0.5, -1, 1)
    one = run_sampler(acts, tokens, batch=6, reservoir=20, signed=signed)
    seq_max = acts[:, 1:].abs().amax(dim=1)
    assert (seq_max[:, 5].unique(return_counts=True)[1] > 1).any(), "the data must hold ties"
    for bounds in ([0, 30, 60, N_SEQ], [0, 12, N_SEQ], [0, 6, 12, 18, 48, 84, N_SEQ]):
        merged = _sharded(acts, tokens, bounds, batch=6, reservoir=20, signed=signed)
        for name in StreamingSampler.STAT_FIELDS:
            if name in ("sum_activation", "sum_error"):
                assert torch.equal(merged.total_activation.float(), one.total_activation.float()), bounds
            else:
                assert torch.equal(getattr(merged, name), getattr(one, name)), (name, bounds)
        assert (merged.n_tokens, merged.n_sequences) == (one.n_tokens, one.n_sequences)
        a, b = select_examples(one, split_sizes()), select_examples(merged, split_sizes())
        for field in (
            "latent",
            "split",
            "kind",
            "quantile",
            "rank",
            "sequence",
            "start",
            "max_activation",
            "tokens",
            "activations",
        ):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (field, bounds)
        assert np.array_equal(a.quantile_edges, b.quantile_edges, equal_nan=True)
