"""Collect's reduce phase: merge the shards' samplers, select the explain and test sets, write the run.

Merging is ``StreamingSampler.absorb`` in shard order (largest keys with ties broken by sequence, counts
added, a compensated sum): the merged sampler is the one a single pass would have built.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import CollectConfig
from .sampler import StreamingSampler, histogram_edges
from .select import SplitSizes, select_examples
from .step import ShardResult
from .stream import corpus_too_short, n_sequences, sampler_sizes
from .writer import write_collection


@dataclass
class CollectResult:
    run_id: str
    skipped: bool  # True when an identical collect was already complete
    n_tokens: int = 0
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    status_counts: dict | None = None


def merge(
    results: Iterable[ShardResult], config: CollectConfig, n_latents: int, signed: bool
) -> tuple[StreamingSampler, float]:
    """One finished sampler from the shards' results (a lone sampler built here is used as it is) and
    the seconds merging took. Raises when the corpus ended before the last shard's end."""
    start = time.perf_counter()
    results = iter(results)
    first = next(results)
    second = next(results, None)
    n_seqs = n_sequences(config)
    available = n_seqs
    if second is None and first.sampler is not None:
        sampler = first.sampler
        if first.made < first.last - first.first:
            available = first.first + first.made
    else:
        sampler = StreamingSampler(sampler_sizes(config, n_latents, signed), torch.device("cpu"))
        for result in itertools.chain([first], [second] if second is not None else [], results):
            if result.made < result.last - result.first:
                available = min(available, result.first + result.made)
            sampler.absorb(result.sampler_state())
        sampler.finish()
    if available < n_seqs:
        raise corpus_too_short(config, available)
    return sampler, time.perf_counter() - start


def select_and_write(
    con,
    run_id,
    config: CollectConfig,
    sampler: StreamingSampler,
    collection: dict,
    token_strings,
    earlier: list[str],
    seconds: float,
    extra_summary: dict | None = None,
    planted: list[dict] | None = None,
) -> CollectResult:
    """Select the explain and test sets from a finished (or merged) sampler and write the run, with the
    ground truth of any planted latents (``planted``: ``PlantedDictionary.rows``)."""
    done = sampler.n_sequences
    selection = select_examples(
        sampler,
        SplitSizes(
            n_quantiles=config.n_quantiles,
            explain_per_quantile=config.explain_per_quantile,
            test_per_quantile=config.test_per_quantile,
            random_explain=config.random_explain,
            random_test=config.random_test,
            seed=config.seed,
        ),
    )
    stats = latent_statistics(sampler, selection, config)
    collection = {
        **collection,
        "dataset": config.dataset,
        "n_sequences": done,
        "n_tokens": sampler.n_tokens,
        "seq_len": config.seq_len,
        "window": config.window,
        "histogram_edges": histogram_edges(config.histogram_bins).tolist(),
    }
    status_counts = {s: int((stats["status"] == s).sum()) for s in ("ok", "too_few_examples", "dead")}
    summary = {
        "sequences": done,
        "tokens_processed": done * config.seq_len,
        "tokens_counted": sampler.n_tokens,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(done * config.seq_len / seconds, 1),
        "latents": status_counts,
        **(extra_summary or {}),
    }
    if planted:
        summary["planted"] = planted_summary(planted, stats)
    write_collection(con, run_id, earlier, collection, selection, stats, token_strings, summary, planted)
    return CollectResult(
        run_id=run_id,
        skipped=False,
        n_tokens=done * config.seq_len,
        seconds=seconds,
        tokens_per_second=done * config.seq_len / seconds,
        status_counts=status_counts,
    )


def planted_summary(planted: list[dict], stats: dict[str, np.ndarray]) -> dict:
    """How many planted latents there are, and how many could not reach their target density."""
    short = [row["latent"] for row in planted if not row["density_reached"]]
    return {
        "latents": len(planted),
        "below_target_density": short,
        "ok": int(sum(stats["status"][r["latent"]] == "ok" for r in planted)),
    }


def latent_statistics(sampler: StreamingSampler, selection, config: CollectConfig) -> dict[str, np.ndarray]:
    """Per-latent statistics with a status and, where a latent cannot be explained and scored, the reason."""
    n_firing = sampler.n_firing.cpu().numpy()
    n_active = sampler.n_active_contexts.cpu().numpy()
    n_latents = len(n_firing)
    negatives = np.bincount(selection.latent[selection.kind == 2], minlength=n_latents)
    test_quantile = np.bincount(selection.latent[(selection.kind == 1) & (selection.split == 1)], minlength=n_latents)
    need = config.min_activating_contexts
    status = np.full(n_latents, "ok", dtype=object)
    reason = np.full(n_latents, None, dtype=object)
    for lat in np.nonzero(n_active < need)[0]:
        status[lat] = "too_few_examples"
        reason[lat] = (
            f"{n_active[lat]} activating contexts; {need} needed for {config.n_quantiles} quantiles x "
            f"({config.explain_per_quantile} explain + {config.test_per_quantile} test)"
        )
    for lat in np.nonzero((n_active >= need) & (negatives < config.random_test + config.random_explain))[0]:
        status[lat] = "too_few_examples"
        reason[lat] = (
            f"{negatives[lat]} non-activating contexts found; "
            f"{config.random_test + config.random_explain} needed (the latent fires almost everywhere)"
        )
    for lat in np.nonzero((status == "ok") & (test_quantile < config.n_quantiles * config.test_per_quantile))[0]:
        status[lat] = "too_few_examples"
        reason[lat] = (
            f"{test_quantile[lat]} test contexts across quantiles; "
            f"{config.n_quantiles * config.test_per_quantile} needed"
        )
    dead = n_firing == 0
    status[dead] = "dead"
    reason[dead] = f"never fired in {sampler.n_tokens:,} counted tokens"
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_firing > 0, sampler.total_activation.cpu().numpy() / np.maximum(n_firing, 1), np.nan)
    return {
        "n_firing": n_firing,
        "frequency": n_firing / max(sampler.n_tokens, 1),
        "max_activation": sampler.max_activation.cpu().numpy(),
        "mean_activation": mean,
        "n_active_contexts": n_active,
        "histogram": sampler.histogram.cpu().numpy(),
        "status": status.astype(str),
        "reason": reason,
    }
