"""Several windows per sequence, jittered peaks and source documents, against a brute-force reference."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch

from autointerp.collect.sampler import (
    SALT_NEGATIVE,
    SALT_NEGATIVE_START,
    SALT_PEAK_OFFSET,
    SALT_RESERVOIR,
    SamplerSizes,
    StreamingSampler,
)
from autointerp.collect.select import select_examples
from autointerp.config import CollectConfig
from autointerp.errors import AutointerpError
from autointerp.hashing import hash31, hash62

from .test_sampler import N_SEQ, SEED, T, W, random_activations, split_sizes

L = 9
SEGMENTS = 3  # segments of 8 positions, windows of 6


def documents_of(n_seq: int = N_SEQ) -> torch.Tensor:
    """Document ids of every position: documents of 5 to 40 tokens packed end to end."""
    g = torch.Generator().manual_seed(5)
    lengths = torch.randint(5, 40, (n_seq * T,), generator=g)
    return torch.repeat_interleave(torch.arange(len(lengths)), lengths)[: n_seq * T].view(n_seq, T)


def run(acts, tokens, lo, hi, batch, n=SEGMENTS, jitter=True, reservoir=40, negatives=12, top_k=5, signed=False):
    sizes = SamplerSizes(
        n_latents=L,
        seq_len=T,
        window=W,
        peak_offset=4,
        top_k=top_k,
        reservoir=reservoir,
        negatives=negatives,
        histogram_bins=12,
        seed=SEED,
        signed=signed,
        jitter_peak=jitter,
        windows_per_sequence=n,
    )
    sampler = StreamingSampler(sizes, torch.device("cpu"))
    counted = torch.ones(N_SEQ, T, dtype=torch.bool)
    counted[:, 0] = False
    docs = documents_of()
    for i in range(lo, hi, batch):
        sl = slice(i, min(i + batch, hi))
        sampler.update(acts[sl].clone(), tokens[sl], counted[sl], torch.arange(N_SEQ)[sl], docs[sl])
    return sampler


def reference(acts, n=SEGMENTS, jitter=True):
    """Per (sequence, segment, latent): the peak's magnitude, position and window start, by loops."""
    masked = acts.clone()
    masked[:, 0] = 0
    bounds = [i * T // n for i in range(n + 1)]
    low, high = W // 4, W - 2
    peak_max = torch.zeros(N_SEQ, n, L)
    peak_pos = torch.zeros(N_SEQ, n, L, dtype=torch.int64)
    start = torch.zeros(N_SEQ, n, L, dtype=torch.int64)
    for seq in range(N_SEQ):
        for seg, (lo, hi) in enumerate(pairwise(bounds)):
            for lat in range(L):
                values = masked[seq, lo:hi, lat]
                pos = lo + int(values.argmax())
                offset = (
                    low + int(hash31(SEED, seq * n + seg, lat, SALT_PEAK_OFFSET)) % (high - low + 1) if jitter else 4
                )
                peak_max[seq, seg, lat] = values.max()
                peak_pos[seq, seg, lat] = pos
                start[seq, seg, lat] = min(max(pos - offset, lo), hi - W)
    return masked, peak_max, peak_pos, start


@pytest.fixture(scope="module")
def data():
    acts, tokens = random_activations()
    return acts, tokens, *reference(acts)


def test_each_segment_gives_its_own_context_and_contexts_never_overlap(data):
    acts, tokens, masked, peak_max, peak_pos, start = data
    s = run(acts, tokens, 0, N_SEQ, batch=7, reservoir=N_SEQ * SEGMENTS)
    s.finish()
    assert torch.equal(s.n_active_contexts, (peak_max > 0).sum((0, 1)))
    docs = documents_of()
    for lat in range(L):
        expected = {
            (seq, int(start[seq, seg, lat]))
            for seq in range(N_SEQ)
            for seg in range(SEGMENTS)
            if peak_max[seq, seg, lat] > 0
        }
        res = s.reservoir
        kept = res.key[lat] >= 0
        got = set(zip(res.sequence[lat][kept].tolist(), res.start[lat][kept].tolist(), strict=True))
        assert got == expected  # the reservoir holds them all
        for slot in kept.nonzero().flatten().tolist():
            seq, st = int(res.sequence[lat, slot]), int(res.start[lat, slot])
            seg = st * SEGMENTS // T
            assert np.allclose(res.activations[lat, slot], masked[seq, st : st + W, lat])
            assert res.value[lat, slot] == pytest.approx(float(peak_max[seq, seg, lat]))
            assert int(res.document[lat, slot]) == int(docs[seq, peak_pos[seq, seg, lat]])  # the peak's document
        by_sequence: dict[int, list[int]] = {}
        for seq, st in got:
            by_sequence.setdefault(seq, []).append(st)
        for starts in by_sequence.values():
            assert len(starts) <= SEGMENTS
            assert all(b - a >= W for a, b in pairwise(sorted(starts))), "two windows of one latent overlap"


def test_top_and_reservoir_match_brute_force(data):
    acts, tokens, masked, peak_max, peak_pos, start = data
    s = run(acts, tokens, 0, N_SEQ, batch=4, reservoir=10)
    s.finish()
    for lat in range(L):
        seq, seg = (peak_max[..., lat] > 0).nonzero(as_tuple=True)
        values = peak_max[seq, seg, lat]
        ranked = torch.argsort(values, descending=True)[:5]
        top = s.top.key[lat] >= 0
        assert s.top.sequence[lat][top].tolist() == seq[ranked].tolist()
        assert s.top.start[lat][top].tolist() == start[seq[ranked], seg[ranked], lat].tolist()
        keys = hash62(SEED, seq * SEGMENTS + seg, lat, SALT_RESERVOIR)
        best = torch.argsort(keys, descending=True)[:10]
        expected = set(zip(seq[best].tolist(), start[seq[best], seg[best], lat].tolist(), strict=True))
        kept = s.reservoir.key[lat] >= 0
        got = set(zip(s.reservoir.sequence[lat][kept].tolist(), s.reservoir.start[lat][kept].tolist(), strict=True))
        assert got == expected


def test_negatives_overlap_no_activating_window_of_the_sequence(data):
    acts, tokens, masked, peak_max, _, start = data
    s = run(acts, tokens, 0, N_SEQ, batch=5, negatives=12)
    s.finish()
    neg_start = hash62(SEED, torch.arange(N_SEQ), SALT_NEGATIVE_START) % (T - W + 1)
    docs = documents_of()
    for lat in range(L):
        ok = []
        for seq in range(N_SEQ):
            st = int(neg_start[seq])
            zero = masked[seq, st : st + W, lat].max() == 0
            apart = all(
                peak_max[seq, seg, lat] == 0 or abs(int(start[seq, seg, lat]) - st) >= W for seg in range(SEGMENTS)
            )
            if zero and apart:
                ok.append(seq)
        ok = torch.tensor(ok, dtype=torch.int64)
        keys = hash62(SEED, ok, lat, SALT_NEGATIVE) if len(ok) else torch.empty(0, dtype=torch.int64)
        expected = set(ok[torch.argsort(keys, descending=True)][:12].tolist())
        kept = s.negatives.key[lat] >= 0
        assert set(s.negatives.sequence[lat][kept].tolist()) == expected
        for slot in kept.nonzero().flatten().tolist():
            seq = int(s.negatives.sequence[lat, slot])
            assert int(s.negatives.document[lat, slot]) == int(docs[seq, int(neg_start[seq]) + W // 2])


def test_jittered_peaks_are_spread_over_the_documented_range(data):
    acts, tokens, _, peak_max, peak_pos, start = data
    s = run(acts, tokens, 0, N_SEQ, batch=7, n=1, reservoir=N_SEQ)
    s.finish()
    # Unclamped windows: the peak sits at an index in window // 4 .. window - 2, every one of them used.
    offsets = []
    for lat in range(L):
        kept = s.reservoir.key[lat] >= 0
        peaks = s.reservoir.activations[lat][kept].argmax(dim=1)
        offsets += peaks[(s.reservoir.start[lat][kept] > 0) & (s.reservoir.start[lat][kept] < T - W)].tolist()
    assert len(offsets) > 100
    assert set(offsets) == set(range(W // 4, W - 1))
    # Without jitter every unclamped window has its peak at peak_offset.
    fixed = run(acts, tokens, 0, N_SEQ, batch=7, n=1, reservoir=N_SEQ, jitter=False)
    fixed.finish()
    kept = fixed.reservoir.key >= 0
    inner = kept & (fixed.reservoir.start > 0) & (fixed.reservoir.start < T - W)
    assert (fixed.reservoir.activations.argmax(dim=2)[inner] == 4).all()


@pytest.mark.parametrize("signed", [False, True])
def test_merged_shards_equal_one_pass_with_several_windows(signed):
    acts, tokens = random_activations(seed=3)
    acts = (acts > 0) * (1 + torch.round(acts / 5))  # values 1, 2, 3: ties, also between segments of a sequence
    if signed:
        acts = acts * torch.where(torch.rand(acts.shape, generator=torch.Generator().manual_seed(1)) < 0.5, -1, 1)
    one = run(acts, tokens, 0, N_SEQ, batch=6, reservoir=20, signed=signed)
    one.finish()
    for bounds in ([0, 30, 60, N_SEQ], [0, 6, 12, 18, 48, 84, N_SEQ]):
        states = [run(acts, tokens, lo, hi, 6, reservoir=20, signed=signed).state() for lo, hi in pairwise(bounds)]
        merged = run(acts, tokens, 0, 0, 6, reservoir=20, signed=signed)
        for state in reversed(states):
            merged.absorb(state)
        merged.finish()
        assert torch.equal(merged.n_active_contexts, one.n_active_contexts)
        a, b = select_examples(one, split_sizes()), select_examples(merged, split_sizes())
        for field in ("latent", "split", "kind", "quantile", "rank", "sequence", "start", "document", "activations"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (field, bounds)


def test_windows_per_sequence_must_leave_room_for_a_window():
    assert CollectConfig(windows_per_sequence=8).windows_per_sequence == 8  # 256 // 8 = 32 = window
    for bad in (0, -1, 9):
        with pytest.raises(AutointerpError, match="windows-per-sequence"):
            CollectConfig(windows_per_sequence=bad)
