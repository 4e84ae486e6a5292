"""The sample stage: run the subject model and a dictionary over a corpus, keep every latent's contexts.

The dictionary is an SAE or transcoder of any format ``load_dictionary`` reads, or the model's MLP
neurons (see ``dictionary.py``). Order of work, so that a mistake fails fast and nothing stored is
touched before the end:
1. open the database (a lock held by another process fails here) and load the dictionary;
2. compare with any earlier collect in the database (a different configuration needs ``overwrite``);
3. load the model, resolve the hookpoint and check the width of what the dictionary reads there;
   open the corpus;
4. stream batches through model -> dictionary -> sampler, with a progress bar;
5. select the explain and test sets and write everything in one transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import ALL_TOKENS, CollectConfig, ExecutorConfig, config_hash
from ..corpus import SequencePacker, available_sequences, no_sequence_error, nonempty_texts, open_corpus, texts_of
from ..errors import AutointerpError
from ..models.subject import SubjectModel, load_subject_model
from ..store import runs
from ..store.collect_writer import write_collection
from ..store.db import connect
from . import dictionary as dictionaries
from .sampler import SamplerSizes, StreamingSampler, histogram_edges
from .select import SplitSizes, select_examples

log = logging.getLogger(__name__)


@dataclass
class CollectResult:
    run_id: str
    skipped: bool  # True when an identical collect was already complete
    n_tokens: int = 0
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    status_counts: dict | None = None


def collect(
    config: CollectConfig,
    db: str | Path,
    overwrite: bool = False,
    progress: bool = True,
    executor: ExecutorConfig | None = None,
) -> CollectResult:
    """Run the sample stage into the database at ``db``; see the module docstring. With
    ``executor.executor == "ray"`` the corpus is sharded over Ray workers (``scale/collect_shards.py``)
    and the merged result is the one this process would write, row for row."""
    return collect_many([(config, db)], overwrite, progress, executor)[0]


def collect_many(
    jobs: list[tuple[CollectConfig, str | Path]],
    overwrite: bool = False,
    progress: bool = True,
    executor: ExecutorConfig | None = None,
) -> list[CollectResult]:
    """Several collects (e.g. one per hookpoint or SAE), each into its own database: one after another
    here, or spread together over the workers of a Ray cluster with ``--executor ray``."""
    paths = [str(Path(db).resolve()) for _, db in jobs]
    if len(set(paths)) < len(paths):
        raise AutointerpError(
            "Two collect jobs write the same database.", "one database per job.", 'give each job its own "db".'
        )
    if executor is not None and executor.is_ray and any(config.tokens == ALL_TOKENS for config, _ in jobs):
        raise AutointerpError(
            "--tokens all is not available with --executor ray.",
            "a number of tokens (the shards are planned from it).",
            "pass --tokens N, or run with --executor local.",
        )
    connections = []
    try:
        for _, db in jobs:
            connections.append(connect(db))
        if executor is not None and executor.is_ray:
            from ..scale.collect_shards import collect_on_ray

            return collect_on_ray(
                [(con, db, config) for con, (config, db) in zip(connections, jobs, strict=True)],
                executor,
                overwrite,
                progress,
            )
        return [_collect(con, config, overwrite, progress) for con, (config, _) in zip(connections, jobs, strict=True)]
    finally:
        for con in connections:
            con.close()


def collect_identity(config: CollectConfig) -> tuple[dictionaries.Request, str]:
    """The dictionary request and the hash identifying the collect's result."""
    req = dictionaries.request(config)
    return req, config_hash({"config": config.result_hash(), **req.identity()})


def check_earlier(con, identity: str, overwrite: bool) -> tuple[list, runs.RunRow | None]:
    """Earlier collect runs, and the complete one with this identity if there is one (nothing to do).
    Raises when another process is writing or a different collect is stored without ``overwrite``."""
    earlier = runs.stage_runs(con, "collect")
    for run in earlier:
        if run.is_alive_elsewhere():
            raise AutointerpError(
                f"Another collect (run {run.run_id}, pid {run.pid}) is writing this database.",
                fix="wait for it to finish or stop it.",
            )
    complete = [r for r in earlier if r.status == "complete"]
    if complete and complete[-1].config_hash == identity and not overwrite:
        log.info("an identical collect (%s) is already complete; nothing to do", complete[-1].run_id)
        return earlier, complete[-1]
    if complete and complete[-1].config_hash != identity and not overwrite:
        raise AutointerpError(
            f"The database already holds a collect with another configuration (run {complete[-1].run_id}, "
            f"config hash {complete[-1].config_hash}; this one is {identity}).",
            "a new database path, or the configuration of the earlier run.",
            "pass --overwrite to replace the earlier results, or use another --db.",
        )
    return earlier, None


def _collect(con, config: CollectConfig, overwrite: bool, progress: bool) -> CollectResult:
    req, identity = collect_identity(config)
    earlier, done = check_earlier(con, identity, overwrite)
    if done is not None:
        return CollectResult(run_id=done.run_id, skipped=True)

    subject = load_subject_model(config.model, "", config.device, config.dtype)
    dictionary, hookpoint = dictionaries.attach(req, config, subject)
    corpus = open_corpus(config.dataset, config.split, config.text_column, config.dataset_config)
    config, available = _count_corpus(config, subject, corpus)  # before the model runs: a short corpus fails fast
    dictionary.to(subject.device)

    run_id = runs.new_run_id("collect")
    stored_config = {
        **config.to_dict(),
        "hookpoint": hookpoint,
        "resolved": {
            **dictionaries.describe(req, dictionary, config),
            "model": subject.name,
            "device": str(subject.device),
            "dtype": str(subject.dtype),
        },
    }
    runs.start_run(con, run_id, "collect", stored_config, identity)
    try:
        if available < n_sequences(config):
            raise corpus_too_short(config, available)
        return _stream_and_write(
            con,
            run_id,
            config,
            subject,
            dictionary,
            corpus,
            hookpoint,
            stored_config["resolved"]["sae_path"],
            [r.run_id for r in earlier],
            progress,
        )
    except KeyboardInterrupt:
        runs.fail_run(con, run_id, "interrupted")
        raise
    except Exception as exc:
        runs.fail_run(con, run_id, f"{type(exc).__name__}: {exc}")
        raise


def _batches(
    config: CollectConfig, subject: SubjectModel, corpus, first: int, last: int, position: tuple[int, int] | None = None
):
    """Yield [batch, seq_len] token tensors of sequences ``first`` to ``last`` - 1, tokenizing in a
    background thread; return the number of sequences made. Batches are cut from ``first``, so a shard
    that starts at a multiple of the batch size sees exactly the batches a single pass sees (the same
    inputs give bitwise the same activations). ``position`` is where sequence ``first`` begins in the
    corpus (``SequencePacker.locate``); without it the sequences before ``first`` are tokenized and
    dropped."""
    packer = SequencePacker(subject.tokenizer, config.seq_len)
    out: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()
    if position is None:
        texts, offset, skip = texts_of(corpus, config.text_column), 0, first
    else:
        texts, offset, skip = nonempty_texts(corpus, config.text_column, position[0]), position[1], 0

    def produce():
        try:
            batch, made, index = [], 0, first - skip - 1
            for seq in packer.sequences(texts, offset):
                index += 1
                if index < first:
                    continue
                batch.append(seq)
                made += 1
                if len(batch) == config.batch_size or first + made == last:
                    out.put(torch.from_numpy(np.stack(batch)))
                    batch = []
                if first + made == last or stop.is_set():
                    break
            if batch:
                out.put(torch.from_numpy(np.stack(batch)))
            out.put(("end", made))
        except BaseException as exc:  # hand the error to the consumer
            out.put(("error", exc))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if isinstance(item, tuple):
                if item[0] == "error":
                    raise item[1]
                return item[1]
            yield item
    finally:
        stop.set()


def _count_corpus(config: CollectConfig, subject: SubjectModel, corpus) -> tuple[CollectConfig, int]:
    """The config with ``--tokens all`` resolved, and the whole sequences the corpus holds (counted up to
    the requested number)."""
    wanted = None if config.tokens == ALL_TOKENS else n_sequences(config)
    available = available_sequences(subject.tokenizer, corpus, config.text_column, config.seq_len, wanted)
    if wanted is None:
        if available == 0:
            raise no_sequence_error(config.seq_len)
        config = dataclasses.replace(config, tokens=available * config.seq_len)
    return config, available


def n_sequences(config: CollectConfig) -> int:
    return math.ceil(config.tokens / config.seq_len)


def sampler_sizes(config: CollectConfig, n_latents: int, signed: bool) -> SamplerSizes:
    return SamplerSizes(
        n_latents=n_latents,
        seq_len=config.seq_len,
        window=config.window,
        peak_offset=config.peak_offset,
        top_k=config.top_k,
        reservoir=config.reservoir,
        negatives=config.random_test + config.random_explain,
        histogram_bins=config.histogram_bins,
        seed=config.seed,
        signed=signed,
    )


def corpus_too_short(config: CollectConfig, available: int) -> AutointerpError:
    if available == 0:
        return no_sequence_error(config.seq_len)
    have = available * config.seq_len
    return AutointerpError(
        f"The corpus has only {have:,} tokens ({available:,} sequences of {config.seq_len}); "
        f"{config.tokens:,} were requested.",
        f"--tokens at most {have:,} for this corpus.",
        f"pass --tokens {have} (or --tokens all), or a larger dataset.",
    )


def stream(
    config: CollectConfig,
    subject: SubjectModel,
    dictionary,
    corpus,
    first: int,
    last: int,
    progress: bool = True,
    position: tuple[int, int] | None = None,
) -> tuple[StreamingSampler, int, float]:
    """Run sequences ``first`` to ``last`` - 1 through model -> dictionary -> sampler: the sampler, the
    sequences made (fewer than asked when the corpus ends) and the seconds it took. ``position``: see
    ``_batches``."""
    device = subject.device
    sampler = StreamingSampler(sampler_sizes(config, dictionary.d_sae, dictionary.signed), device)
    special = torch.tensor(subject.special_token_ids(), dtype=torch.int64, device=device)
    bar = tqdm(
        total=(last - first) * config.seq_len,
        unit="tok",
        unit_scale=True,
        disable=not progress,
        desc="collect",
        dynamic_ncols=True,
    )
    start = time.perf_counter()
    done = first
    batches = _batches(config, subject, corpus, first, last, position)
    try:
        # inference mode throughout: the sampler may update in place what the dictionary returns, which
        # for raw neurons is the tensor the hook captured
        with torch.inference_mode():
            for ids in batches:
                ids = ids.to(device)
                acts = dictionary.encode(subject.read(ids))
                counted = ~torch.isin(ids, special)
                if config.exclude_first_position:
                    counted[:, 0] = False
                seq_ids = torch.arange(done, done + ids.shape[0], device=device)
                sampler.update(acts, ids, counted, seq_ids)
                done += ids.shape[0]
                bar.update(ids.numel())
            sampler.finish()
    finally:
        bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sampler, done - first, time.perf_counter() - start


def _stream_and_write(con, run_id, config, subject, dictionary, corpus, hookpoint, source, earlier, progress):
    n_seqs = n_sequences(config)
    sampler, done, seconds = stream(config, subject, dictionary, corpus, 0, n_seqs, progress)
    if done < n_seqs:
        raise corpus_too_short(config, done)
    collection = {"model": subject.name, "hookpoint": hookpoint, "sae": source}

    def token_strings(ids: np.ndarray) -> list[str]:
        return subject.tokenizer.batch_decode([[int(i)] for i in ids])

    return select_and_write(con, run_id, config, sampler, collection, token_strings, earlier, seconds)


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
) -> CollectResult:
    """Select the explain and test sets from a finished (or merged) sampler and write the run."""
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
    write_collection(con, run_id, earlier, collection, selection, stats, token_strings, summary)
    return CollectResult(
        run_id=run_id,
        skipped=False,
        n_tokens=done * config.seq_len,
        seconds=seconds,
        tokens_per_second=done * config.seq_len / seconds,
        status_counts=status_counts,
    )


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
