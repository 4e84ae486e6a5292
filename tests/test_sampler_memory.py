"""A keys-only sampler (``--sampler-memory keys``) with its chosen windows replayed selects and stores exactly
what a sampler that keeps every window does, alone and merged from shards, in a fraction of the memory."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from autointerp.collect.parts import read_part, write_part
from autointerp.collect.replay import WindowCutter, WindowRequest
from autointerp.collect.sampler import SamplerSizes, StreamingSampler
from autointerp.collect.select import SplitSizes, select_examples
from autointerp.collect.stage import collect
from autointerp.collect.stream import keeps_windows, sampler_bytes_per_latent, sampler_sizes
from autointerp.config import CollectConfig
from autointerp.errors import AutointerpError
from autointerp.executor import LocalExecutor

from .conftest import assert_same_collect, small_config

N_SEQ, T, L, W, BATCH = 60, 24, 7, 6, 8
SPLIT = SplitSizes(n_quantiles=3, explain_per_quantile=2, test_per_quantile=2, random_explain=2, random_test=4, seed=5)


def activations(signed: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse random activations [N_SEQ, T, L] with latents of several densities (one that fires almost
    everywhere), token ids and the positions that count (not the first)."""
    g = torch.Generator().manual_seed(3)
    rates = torch.tensor([0.0, 0.01, 0.03, 0.1, 0.3, 0.6, 0.95])
    acts = torch.rand(N_SEQ, T, L, generator=g) * 10 * (torch.rand(N_SEQ, T, L, generator=g) < rates)
    if signed:
        acts = acts * torch.where(torch.rand(N_SEQ, T, L, generator=g) < 0.5, -1.0, 1.0)
    tokens = torch.randint(3, 1000, (N_SEQ, T), generator=g)
    counted = torch.ones(N_SEQ, T, dtype=torch.bool)
    counted[:, 0] = False
    return acts, tokens, counted


def sizes(keep_windows: bool, signed: bool = False, windows_per_sequence: int = 1) -> SamplerSizes:
    return SamplerSizes(
        n_latents=L,
        seq_len=T,
        window=W,
        peak_offset=3,
        top_k=3,
        reservoir=16,
        negatives=7,
        histogram_bins=8,
        seed=11,
        signed=signed,
        jitter_peak=True,
        windows_per_sequence=windows_per_sequence,
        keep_windows=keep_windows,
    )


def stream(data, sampler_sizes: SamplerSizes, lo: int = 0, hi: int = N_SEQ) -> StreamingSampler:
    acts, tokens, counted = data
    sampler = StreamingSampler(sampler_sizes, torch.device("cpu"))
    for first in range(lo, hi, BATCH):
        sl = slice(first, min(first + BATCH, hi))
        documents = torch.arange(N_SEQ)[sl].unsqueeze(1).expand(-1, T) // 3  # three sequences per document
        sampler.update(acts[sl].clone(), tokens[sl], counted[sl], torch.arange(N_SEQ)[sl], documents)
    return sampler


def replayed(data, selection) -> None:
    """Fill a keys-only selection's windows from the batches that hold them, as ``replay_windows`` does."""
    acts, tokens, counted = data
    request = WindowRequest.of(selection, W)
    cutter = WindowCutter(request)
    for batch in request.batches(BATCH)[::-1]:  # any order
        sl = slice(batch * BATCH, min((batch + 1) * BATCH, N_SEQ))
        cutter.cut(sl.start, acts[sl].clone(), tokens[sl], counted[sl])
    selection.tokens, selection.activations = cutter.tokens, cutter.activations


def assert_same_selection(a, b) -> None:
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if x is None or y is None:  # an optional field (hard negatives' similarity, hard_by): both unset
            assert x is None and y is None, field.name
            continue
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), field.name


@pytest.mark.parametrize(
    ("signed", "windows_per_sequence", "weak"), [(False, 1, False), (True, 1, True), (False, 2, True)]
)
def test_keys_only_with_replay_selects_and_stores_what_kept_windows_do(signed, windows_per_sequence, weak):
    data = activations(signed)
    split = dataclasses.replace(SPLIT, weak_negatives=weak)
    windows = select_examples(stream(data, sizes(True, signed, windows_per_sequence)), split)
    keys_sampler = stream(data, sizes(False, signed, windows_per_sequence))
    assert not keys_sampler.keeps_windows and keys_sampler.top.tokens is None
    keys = select_examples(keys_sampler, split)
    assert (windows.activations != 0).any() and not keys.activations.any()  # nothing to store until replayed
    replayed(data, keys)
    assert_same_selection(windows, keys)
    if weak:
        assert (windows.kind == 3).any(), "the dense latent takes weak negatives, whose activations are replayed"


def test_keys_only_shards_merge_through_parts_like_one_pass(tmp_path):
    data = activations(False)
    one = select_examples(stream(data, sizes(True)), SPLIT)
    merged = StreamingSampler(sizes(False), torch.device("cpu"))
    for i, (lo, hi) in enumerate([(0, 24), (24, 48), (48, N_SEQ)]):
        shard = stream(data, sizes(False), lo, hi)
        state, _ = read_part(write_part(tmp_path / f"part{i}", shard.state(), {}))
        assert "tokens" not in state["buffers"]["top"]
        merged.absorb(state)
    merged.finish()
    selection = select_examples(merged, SPLIT)
    replayed(data, selection)
    assert_same_selection(one, selection)


def test_a_keys_only_shard_makes_the_merge_keys_only():
    data = activations(False)
    one = select_examples(stream(data, sizes(True)), SPLIT)
    merged = StreamingSampler(sizes(True), torch.device("cpu"))
    merged.absorb(stream(data, sizes(True), 0, 32).state())
    merged.absorb(stream(data, sizes(False), 32, N_SEQ).state())  # e.g. a rerun with another --sampler-memory
    merged.finish()
    assert not merged.keeps_windows
    selection = select_examples(merged, SPLIT)
    replayed(data, selection)
    assert_same_selection(one, selection)


def test_bytes_per_latent_at_default_sizes():
    default = sampler_sizes(CollectConfig(sampler_memory="keys"), 1, signed=False)
    # per slot: key, sequence (int64), start (int32), value (float32), document (int64); 20 top slots with
    # float32 keys, 200 reservoir and 75 negative slots with int64 keys; then the statistics and floors
    slots = 20 * (4 + 8 + 4 + 4 + 8) + (200 + 75) * (8 + 8 + 4 + 4 + 8)
    stats = 8 + 8 + 8 + 8 + 4 + 50 * 8
    assert sampler_bytes_per_latent(default) == slots + stats + 4 + 8 + 8 <= 16 * 1024
    windows = dataclasses.replace(default, keep_windows=True)
    window_bytes = (20 + 200) * 32 * (4 + 4) + 75 * 32 * 4  # token ids (int32) and activations (float32)
    assert sampler_bytes_per_latent(windows) == sampler_bytes_per_latent(default) + window_bytes
    small = StreamingSampler(dataclasses.replace(default, n_latents=5), torch.device("cpu"))
    assert small.nbytes() == 5 * sampler_bytes_per_latent(default)  # the meta-device figure is the real one


def test_auto_keeps_windows_below_one_gib_only():
    config = CollectConfig()
    assert keeps_windows("auto", sampler_sizes(config, 2304, False))
    assert not keeps_windows("auto", sampler_sizes(config, 131_072, False))
    assert not sampler_sizes(config, 131_072, False).keep_windows
    assert sampler_sizes(CollectConfig(sampler_memory="windows"), 131_072, False).keep_windows
    assert not sampler_sizes(CollectConfig(sampler_memory="keys"), 16, False).keep_windows


def test_sampler_memory_is_checked_and_does_not_change_the_result_identity():
    with pytest.raises(AutointerpError, match="--sampler-memory 'half'"):
        CollectConfig(sampler_memory="half")
    assert CollectConfig(sampler_memory="keys").result_hash() == CollectConfig().result_hash()


@pytest.mark.slow
def test_keys_only_sharded_collect_equals_the_one_pass_collect(collected_db, tmp_path):
    db = tmp_path / "keys.duckdb"
    collect(small_config(sampler_memory="keys"), db, progress=False, executor=LocalExecutor(shard_tokens=2048))
    assert_same_collect(collected_db, db)
    summaries = []
    for path in (collected_db, db):
        con = duckdb.connect(str(path), read_only=True)
        summaries.append(json.loads(con.execute("SELECT summary FROM runs WHERE stage = 'collect'").fetchone()[0]))
        con.close()
    assert "replay" not in summaries[0], "the fixture kept its windows (auto, 2304 latents): the one-pass path"
    assert summaries[1]["replay"]["sequences"] == 24  # every batch holds a chosen sequence at this size


def test_the_sampler_memory_bench_measures_the_keys_only_sampler_and_accounts_the_windowed_one():
    spec = importlib.util.spec_from_file_location(
        "bench_collect", Path(__file__).resolve().parents[1] / "bench/collect.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    small = bench.sampler_memory_child(300, tokens=256, batch_size=2, max_gib=1.0)
    large = bench.sampler_memory_child(5000, tokens=256, batch_size=2, max_gib=0.01)  # over --max-gib: shapes
    assert small["after_measured_on"] == "the sampler that streamed" and small["tokens"] == 256
    assert large["after_measured_on"].startswith("meta device") and "tokens" not in large
    for row in (small, large):
        assert row["bytes_per_latent_before"] == 75_736 and row["bytes_per_latent_after"] == 9_816
