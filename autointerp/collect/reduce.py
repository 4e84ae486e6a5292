"""Collect's reduce phase: merge the shards' samplers, select the explain, test and validate sets, write
the run.

Merging is ``StreamingSampler.absorb`` in shard order (largest keys with ties broken by sequence, counts
added, a compensated sum): the merged sampler is the one a single pass would have built. A keys-only
sampler's chosen windows are replayed between selection and writing (``replay.py``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import CollectConfig
from .replay import WindowRequest
from .sampler import StreamingSampler, histogram_edges
from .select import EXPLAIN, QUANTILE, RANDOM, TEST, TOP, VALIDATE, WEAK, SplitSizes, select_examples
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
    lens: dict | None = None  # the logit lens's summary (``collect.logit_lens.Lens.summary``); None: not computed


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
    replay: Callable[[WindowRequest], tuple] | None = None,
) -> CollectResult:
    """Select the explain and test sets from a finished (or merged) sampler and write the run, with the
    ground truth of any planted latents (``planted``: ``PlantedDictionary.rows``). A keys-only sampler's
    chosen windows are filled by ``replay(request)`` (``replay.replay_windows`` where the job is set up)."""
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
            weak_negatives=config.weak_negatives,
            validate_per_quantile=config.validate_per_quantile,
            random_validate=config.random_validate,
        ),
    )
    extra_summary = dict(extra_summary or {})
    if not sampler.keeps_windows:
        if replay is None:
            raise ValueError("a keys-only sampler's windows need a replay")
        selection.tokens, selection.activations, cost = replay(WindowRequest.of(selection, config.window))
        extra_summary["replay"] = cost
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
        **extra_summary,
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


WEAK_NOTE = "negatives are weak"


def latent_reasons(selection, n_active: np.ndarray, config: CollectConfig) -> dict[int, str]:
    """Reason of every latent that is not ``ok`` (dead latents aside), and of ``ok`` latents whose
    negatives are weak (those start with ``WEAK_NOTE``)."""
    n_latents = len(n_active)

    def count(mask) -> np.ndarray:
        return np.bincount(selection.latent[mask], minlength=n_latents)

    clean, weak = count(selection.kind == RANDOM), count(selection.kind == WEAK)
    positive = (selection.kind == TOP) | (selection.kind == QUANTILE)
    explain, test = count(positive & (selection.split == EXPLAIN)), count(positive & (selection.split == TEST))
    validate = count(positive & (selection.split == VALIDATE))
    need = config.random_test + config.random_validate + config.random_explain
    negatives = clean + weak
    # a validate set asked for must hold an activating context too (without one it cannot rank explanations)
    no_validate = (validate == 0) & (config.validate_per_quantile > 0)
    flagged = (n_active > 0) & (
        (n_active < config.min_activating)
        | (explain == 0)
        | (test == 0)
        | no_validate
        | (negatives < need)
        | (weak > 0)
    )
    asked = f"--random-test {config.random_test} + " + (
        f"--random-validate {config.random_validate} + " if config.random_validate else ""
    )
    reasons = {}
    for lat in np.nonzero(flagged)[0].tolist():
        n = int(n_active[lat])
        if n < config.min_activating:
            reasons[lat] = f"{n} activating contexts; --min-activating is {config.min_activating}"
        elif explain[lat] == 0 or test[lat] == 0:
            reasons[lat] = (
                f"{n} activating contexts gave {explain[lat]} explain and {test[lat]} test contexts; "
                "both sets need at least one (raise --min-activating or the per-quantile sizes)"
            )
        elif no_validate[lat]:
            reasons[lat] = (
                f"{n} activating contexts gave {explain[lat]} explain, {test[lat]} test and 0 validate contexts; "
                "each set asked for needs at least one (raise --min-activating or lower --validate-per-quantile)"
            )
        elif negatives[lat] < need and not config.weak_negatives:
            reasons[lat] = (
                f"{clean[lat]} non-activating windows usable; {need} needed ({asked}"
                f"--random-explain {config.random_explain}): the latent fires almost everywhere "
                "(pass --weak-negatives to use its weakest-activating windows as negatives)"
            )
        elif negatives[lat] < need:
            reasons[lat] = (
                f"{clean[lat]} non-activating windows and {weak[lat]} weakest-activating windows usable; "
                f"{need} negatives needed ({asked}--random-explain {config.random_explain})"
            )
        elif weak[lat]:
            reasons[lat] = (
                f"{WEAK_NOTE}: {clean[lat]} non-activating windows and {weak[lat]} weakest-activating windows "
                "(kind 'weak', --weak-negatives)"
            )
    return reasons


def planted_summary(planted: list[dict], stats: dict[str, np.ndarray]) -> dict:
    """How many planted latents there are, and how many could not reach their target density."""
    short = [row["latent"] for row in planted if not row["density_reached"]]
    return {
        "latents": len(planted),
        "below_target_density": short,
        "ok": int(sum(stats["status"][r["latent"]] == "ok" for r in planted)),
    }


def latent_statistics(sampler: StreamingSampler, selection, config: CollectConfig) -> dict[str, np.ndarray]:
    """Per-latent statistics with a status and a reason: why a latent cannot be explained and scored, or
    (for an ``ok`` latent) that its negatives are weak."""
    n_firing = sampler.n_firing.cpu().numpy()
    n_active = sampler.n_active_contexts.cpu().numpy()
    n_latents = len(n_firing)
    status = np.full(n_latents, "ok", dtype=object)
    reason = np.full(n_latents, None, dtype=object)
    for lat, text in latent_reasons(selection, n_active, config).items():
        status[lat] = "too_few_examples" if not text.startswith(WEAK_NOTE) else "ok"
        reason[lat] = text
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
