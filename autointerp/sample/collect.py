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

from ..config import CollectConfig, config_hash
from ..corpus import SequencePacker, open_corpus, texts_of
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


def collect(config: CollectConfig, db: str | Path, overwrite: bool = False, progress: bool = True) -> CollectResult:
    """Run the sample stage into the database at ``db``; see the module docstring."""
    con = connect(db)
    try:
        return _collect(con, config, overwrite, progress)
    finally:
        con.close()


def _collect(con, config: CollectConfig, overwrite: bool, progress: bool) -> CollectResult:
    req = dictionaries.request(config)
    identity = config_hash({"config": config.result_hash(), **req.identity()})

    earlier = runs.stage_runs(con, "collect")
    for run in earlier:
        if run.is_alive_elsewhere():
            raise AutointerpError(f"Another collect (run {run.run_id}, pid {run.pid}) is writing this database.",
                                  fix="wait for it to finish or stop it.")
    complete = [r for r in earlier if r.status == "complete"]
    if complete and complete[-1].config_hash == identity and not overwrite:
        log.info("an identical collect (%s) is already complete; nothing to do", complete[-1].run_id)
        return CollectResult(run_id=complete[-1].run_id, skipped=True)
    if complete and complete[-1].config_hash != identity and not overwrite:
        raise AutointerpError(
            f"The database already holds a collect with another configuration (run {complete[-1].run_id}, "
            f"config hash {complete[-1].config_hash}; this one is {identity}).",
            "a new database path, or the configuration of the earlier run.",
            "pass --overwrite to replace the earlier results, or use another --db.")

    subject = load_subject_model(config.model, "", config.device, config.dtype)
    dictionary, hookpoint = dictionaries.attach(req, config, subject)
    corpus = open_corpus(config.dataset, config.split, config.text_column, config.dataset_config)
    dictionary.to(subject.device)

    run_id = runs.new_run_id("collect")
    stored_config = {**config.to_dict(), "hookpoint": hookpoint,
                     "resolved": {**dictionaries.describe(req, dictionary, config), "model": subject.name,
                                  "device": str(subject.device), "dtype": str(subject.dtype)}}
    runs.start_run(con, run_id, "collect", stored_config, identity)
    try:
        return _stream_and_write(con, run_id, config, subject, dictionary, corpus, hookpoint,
                                 stored_config["resolved"]["sae_path"], [r.run_id for r in earlier], progress)
    except KeyboardInterrupt:
        runs.fail_run(con, run_id, "interrupted")
        raise
    except Exception as exc:
        runs.fail_run(con, run_id, f"{type(exc).__name__}: {exc}")
        raise


def _batches(config: CollectConfig, subject: SubjectModel, corpus, n_seqs: int):
    """Yield [batch, seq_len] token tensors, tokenizing in a background thread."""
    packer = SequencePacker(subject.tokenizer, config.seq_len)
    out: queue.Queue = queue.Queue(maxsize=8)
    stop = threading.Event()

    def produce():
        try:
            batch, made = [], 0
            for seq in packer.sequences(texts_of(corpus, config.text_column)):
                batch.append(seq)
                made += 1
                if len(batch) == config.batch_size or made == n_seqs:
                    out.put(torch.from_numpy(np.stack(batch)))
                    batch = []
                if made == n_seqs or stop.is_set():
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


def _stream_and_write(con, run_id, config, subject, dictionary, corpus, hookpoint, source, earlier, progress):
    n_seqs = math.ceil(config.tokens / config.seq_len)
    device = subject.device
    sizes = SamplerSizes(n_latents=dictionary.d_sae, seq_len=config.seq_len, window=config.window,
                         peak_offset=config.peak_offset, top_k=config.top_k, reservoir=config.reservoir,
                         negatives=config.random_test + config.random_explain,
                         histogram_bins=config.histogram_bins, seed=config.seed, signed=dictionary.signed)
    sampler = StreamingSampler(sizes, device)
    special = torch.tensor(subject.special_token_ids(), dtype=torch.int64, device=device)
    bar = tqdm(total=n_seqs * config.seq_len, unit="tok", unit_scale=True, disable=not progress,
               desc="collect", dynamic_ncols=True)
    start = time.perf_counter()
    done = 0
    batches = _batches(config, subject, corpus, n_seqs)
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
    if done < n_seqs:
        have = done * config.seq_len
        raise AutointerpError(
            f"The corpus has only {have:,} tokens ({done:,} sequences of {config.seq_len}); "
            f"{config.tokens:,} were requested.",
            f"--tokens at most {have:,} for this corpus.", f"pass --tokens {have} or a larger dataset.")
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    selection = select_examples(sampler, SplitSizes(
        n_quantiles=config.n_quantiles, explain_per_quantile=config.explain_per_quantile,
        test_per_quantile=config.test_per_quantile, random_explain=config.random_explain,
        random_test=config.random_test, seed=config.seed))
    stats = latent_statistics(sampler, selection, config)
    collection = {"model": subject.name, "hookpoint": hookpoint, "sae": source,
                  "dataset": config.dataset, "n_sequences": done, "n_tokens": sampler.n_tokens,
                  "seq_len": config.seq_len, "window": config.window,
                  "histogram_edges": histogram_edges(config.histogram_bins).tolist()}
    status_counts = {s: int((stats["status"] == s).sum()) for s in ("ok", "too_few_examples", "dead")}
    summary = {"sequences": done, "tokens_processed": done * config.seq_len, "tokens_counted": sampler.n_tokens,
               "seconds": round(seconds, 2), "tokens_per_second": round(done * config.seq_len / seconds, 1),
               "latents": status_counts}

    def token_strings(ids: np.ndarray) -> list[str]:
        return subject.tokenizer.batch_decode([[int(i)] for i in ids])

    write_collection(con, run_id, earlier, collection, selection, stats, token_strings, summary)
    return CollectResult(run_id=run_id, skipped=False, n_tokens=done * config.seq_len, seconds=seconds,
                         tokens_per_second=done * config.seq_len / seconds, status_counts=status_counts)


def latent_statistics(sampler: StreamingSampler, selection, config: CollectConfig) -> dict[str, np.ndarray]:
    """Per-latent statistics with a status and, where a latent cannot be explained and scored, the reason."""
    n_firing = sampler.n_firing.cpu().numpy()
    n_active = sampler.n_active_contexts.cpu().numpy()
    n_latents = len(n_firing)
    negatives = np.bincount(selection.latent[selection.kind == 2], minlength=n_latents)
    test_quantile = np.bincount(selection.latent[(selection.kind == 1) & (selection.split == 1)],
                                minlength=n_latents)
    need = config.min_activating_contexts
    status = np.full(n_latents, "ok", dtype=object)
    reason = np.full(n_latents, None, dtype=object)
    for lat in np.nonzero(n_active < need)[0]:
        status[lat] = "too_few_examples"
        reason[lat] = (f"{n_active[lat]} activating contexts; {need} needed for {config.n_quantiles} quantiles x "
                       f"({config.explain_per_quantile} explain + {config.test_per_quantile} test)")
    for lat in np.nonzero((n_active >= need) & (negatives < config.random_test + config.random_explain))[0]:
        status[lat] = "too_few_examples"
        reason[lat] = (f"{negatives[lat]} non-activating contexts found; "
                       f"{config.random_test + config.random_explain} needed (the latent fires almost everywhere)")
    for lat in np.nonzero((status == "ok") & (test_quantile < config.n_quantiles * config.test_per_quantile))[0]:
        status[lat] = "too_few_examples"
        reason[lat] = (f"{test_quantile[lat]} test contexts across quantiles; "
                       f"{config.n_quantiles * config.test_per_quantile} needed")
    dead = n_firing == 0
    status[dead] = "dead"
    reason[dead] = f"never fired in {sampler.n_tokens:,} counted tokens"
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_firing > 0, sampler.total_activation.cpu().numpy() / np.maximum(n_firing, 1), np.nan)
    return {"n_firing": n_firing, "frequency": n_firing / max(sampler.n_tokens, 1),
            "max_activation": sampler.max_activation.cpu().numpy(), "mean_activation": mean,
            "n_active_contexts": n_active, "histogram": sampler.histogram.cpu().numpy(),
            "status": status.astype(str), "reason": reason}
