"""``autointerp collect --executor ray``: the corpus sharded by sequence range over Ray workers.

1. The driver (this process) checks the database as a local collect does, starts the workers (Ray
   actors: one GPU each on a GPU cluster) and has each load the subject model and the dictionary.
2. The sequences ``0 .. n`` are cut into shards of whole batches. A shard starts at a multiple of the
   batch size, so its batches are exactly the batches of a single pass: the same inputs, bitwise the
   same activations. Each idle worker takes the next shard, streams it through model -> dictionary ->
   sampler with global sequence numbers (every random choice is a hash of them, see
   ``sample/hashing.py``) and writes the sampler's state as a Parquet part (``shard_parts.py``). A
   worker keeps only its own shard's candidates.
3. The driver merges the parts one at a time into one sampler (``StreamingSampler.absorb``: largest
   keys with ties broken by sequence, counts added, a compensated sum), selects the explain and test
   sets and writes the run exactly as a local collect does, in one transaction. The result equals a
   single-process collect with the same configuration, row for row (tests/test_scale_collect.py).

Failures: a worker that dies loses only the shard it was running; the shard goes back in the queue
and the job finishes on the other workers. Finished shards stay on disk under ``--parts-dir`` (by
default DB.parts/<config hash>) until the merged result is committed, so a rerun of a failed job
redoes only unfinished shards. Every worker tokenizes the corpus from its start to reach its shard
(packing joins documents, so a sequence's tokens depend on everything before it): at a billion tokens
this skipping, not the model, becomes the cost to remove first (docs/scaling.md).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections import deque
from pathlib import Path

from tqdm.auto import tqdm

from ..config import CollectConfig, ExecutorConfig
from ..errors import AutointerpError
from ..sample import collect as local
from ..sample.sampler import StreamingSampler
from ..store import runs
from .cluster import import_ray, ray_cluster
from .shard_parts import read_manifest, read_part, shard_name, write_part

log = logging.getLogger(__name__)
SHARDS_PER_WORKER = 4


def plan_shards(n_seqs: int, config: CollectConfig, executor: ExecutorConfig, workers: int) -> list[tuple[int, int]]:
    """Sequence ranges [first, last) covering 0 .. n_seqs, each a whole number of batches."""
    if executor.shard_tokens:
        per_shard = math.ceil(executor.shard_tokens / config.seq_len)
    else:
        per_shard = math.ceil(n_seqs / (SHARDS_PER_WORKER * max(workers, 1)))
    per_shard = max(1, math.ceil(per_shard / config.batch_size)) * config.batch_size
    return [(first, min(first + per_shard, n_seqs)) for first in range(0, n_seqs, per_shard)]


class CollectWorker:
    """One Ray actor: loads the model and the dictionary once, then streams shards into parts."""

    def __init__(self, config: dict):
        self.config = CollectConfig(**config)
        self.subject = self.dictionary = self.corpus = None

    def load(self) -> dict:
        from ..corpus import open_corpus
        from ..models.subject import load_subject_model
        from ..sample import dictionary as dictionaries

        config = self.config
        req = dictionaries.request(config)
        self.subject = load_subject_model(config.model, "", config.device, config.dtype)
        self.dictionary, hookpoint = dictionaries.attach(req, config, self.subject)
        self.dictionary.to(self.subject.device)
        self.corpus = open_corpus(config.dataset, config.split, config.text_column, config.dataset_config)
        return {"hookpoint": hookpoint, "n_latents": int(self.dictionary.d_sae), "signed": bool(self.dictionary.signed),
                "resolved": {**dictionaries.describe(req, self.dictionary, config), "model": self.subject.name,
                             "device": str(self.subject.device), "dtype": str(self.subject.dtype)}}

    def run_shard(self, first: int, last: int, folder: str, identity: str) -> dict:
        sampler, made, seconds = local.stream(self.config, self.subject, self.dictionary, self.corpus,
                                              first, last, progress=False)
        manifest = {"first": first, "last": last, "made": made, "seconds": seconds, "identity": identity,
                    "pid": os.getpid()}
        write_part(Path(folder), sampler.state(), manifest)
        return manifest

    def decode(self, ids: list[int]) -> list[str]:
        return self.subject.tokenizer.batch_decode([[int(i)] for i in ids])

    def pid(self) -> int:
        return os.getpid()


def _cause(exc: Exception) -> Exception:
    """The exception raised inside a Ray task (Ray wraps it)."""
    return getattr(exc, "cause", None) or exc


def collect_on_ray(con, db, config: CollectConfig, executor: ExecutorConfig, overwrite: bool,
                   progress: bool, worker_class: type = CollectWorker) -> local.CollectResult:
    """See the module docstring; ``worker_class`` lets a test inject faults into real workers."""
    req, identity = local.collect_identity(config)
    earlier, done = local.check_earlier(con, identity, overwrite)
    if done is not None:
        return local.CollectResult(run_id=done.run_id, skipped=True)
    parts = Path(executor.parts_dir or f"{db}.parts") / identity
    with ray_cluster(executor) as cluster:
        ray = import_ray()
        actor_class = ray.remote(num_cpus=cluster.cpus_per_worker, num_gpus=cluster.gpus_per_worker,
                                 max_restarts=0)(worker_class)
        actors = [actor_class.remote(config.to_dict()) for _ in range(cluster.workers)]
        try:
            return _run(con, db, config, executor, identity, earlier, parts, actors, cluster, progress)
        finally:
            for actor in actors:
                ray.kill(actor)


def _load(actors: list) -> tuple[dict, set[int]]:
    """Load model and dictionary on every worker; the first description, and the workers that died."""
    ray = import_ray()
    from ray.exceptions import RayActorError

    meta, dead = None, set()
    for i, ref in enumerate([a.load.remote() for a in actors]):
        try:
            got = ray.get(ref)
        except RayActorError as exc:
            log.warning("Ray worker %d died while loading: %s", i, exc)
            dead.add(i)
            continue
        except Exception as exc:  # noqa: BLE001 - a task error: a bad model, SAE or corpus
            raise _cause(exc) from None
        meta = meta or got
    if meta is None:
        raise AutointerpError("Every Ray worker died while loading the model and the dictionary.",
                              "workers with enough memory for the subject model and the dictionary.",
                              "see the Ray logs (/tmp/ray/session_latest/logs) of the workers.")
    return meta, dead


def _run(con, db, config, executor, identity, earlier, parts, actors, cluster, progress) -> local.CollectResult:
    ray = import_ray()
    from ray.exceptions import RayActorError

    start = time.perf_counter()
    meta, dead = _load(actors)
    n_seqs = local.n_sequences(config)
    shards = plan_shards(n_seqs, config, executor, cluster.workers)
    parts.mkdir(parents=True, exist_ok=True)
    reused = [s for s in shards if (m := read_manifest(parts / shard_name(*s))) and m.get("identity") == identity]
    run_id = runs.new_run_id("collect")
    stored = {**config.to_dict(), "hookpoint": meta["hookpoint"], "resolved": meta["resolved"],
              "executor": {"executor": "ray", "workers": cluster.workers, "gpus_per_worker": cluster.gpus_per_worker,
                           "shards": len(shards), "shard_sequences": shards[0][1] - shards[0][0],
                           "reused_shards": len(reused), "parts_dir": str(parts)}}
    runs.start_run(con, run_id, "collect", stored, identity)
    try:
        worker_seconds = _dispatch(actors, dead, [s for s in shards if s not in reused], parts, identity,
                                   config, progress, RayActorError)
        sampler = StreamingSampler(local.sampler_sizes(config, meta["n_latents"], meta["signed"]),
                                   _cpu())
        available = n_seqs
        for first, last in shards:
            state, manifest = read_part(parts / shard_name(first, last))
            if manifest["made"] < last - first:
                available = min(available, first + manifest["made"])
            sampler.absorb(state)
        if available < n_seqs:
            raise local.corpus_too_short(config, available)
        sampler.finish()
        alive = next(a for i, a in enumerate(actors) if i not in dead)
        collection = {"model": meta["resolved"]["model"], "hookpoint": meta["hookpoint"],
                      "sae": meta["resolved"]["sae_path"]}

        def token_strings(ids):
            return ray.get(alive.decode.remote([int(i) for i in ids]))

        seconds = time.perf_counter() - start
        result = local.select_and_write(
            con, run_id, config, sampler, collection, token_strings, [r.run_id for r in earlier], seconds,
            {"executor": "ray", "workers": cluster.workers, "workers_died": len(dead), "shards": len(shards),
             "reused_shards": len(reused), "worker_seconds": round(worker_seconds, 2)})
    except KeyboardInterrupt:
        runs.fail_run(con, run_id, "interrupted")
        raise
    except Exception as exc:
        runs.fail_run(con, run_id, f"{type(exc).__name__}: {exc}")
        raise
    shutil.rmtree(parts, ignore_errors=True)  # merged and committed: the parts are no longer needed
    if parts.parent.is_dir() and not any(parts.parent.iterdir()):
        parts.parent.rmdir()
    return result


def _cpu():
    import torch

    return torch.device("cpu")


def _dispatch(actors, dead: set[int], todo: list[tuple[int, int]], parts: Path, identity: str,
              config: CollectConfig, progress: bool, actor_error: type) -> float:
    """Hand shards to idle workers until every shard is on disk; a worker that dies gives its shard
    back to the queue. Returns the workers' summed streaming seconds."""
    ray = import_ray()
    pending = deque(todo)
    idle = [i for i in range(len(actors)) if i not in dead]
    in_flight: dict = {}
    seconds = 0.0
    bar = tqdm(total=sum(last - first for first, last in todo) * config.seq_len, unit="tok", unit_scale=True,
               disable=not progress, desc=f"collect ({len(idle)} Ray workers)", dynamic_ncols=True)
    try:
        while pending or in_flight:
            while pending and idle:
                worker, shard = idle.pop(0), pending.popleft()
                ref = actors[worker].run_shard.remote(*shard, str(parts / shard_name(*shard)), identity)
                in_flight[ref] = (worker, shard)
            if not in_flight:
                raise AutointerpError(
                    f"Every Ray worker died; {len(pending)} shard(s) were not collected. The finished ones are "
                    f"kept in {parts}.", "workers that stay up.", "rerun the same command: it resumes there.")
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            worker, shard = in_flight.pop(ready[0])
            try:
                manifest = ray.get(ready[0])
            except actor_error as exc:
                log.warning("Ray worker %d died running shard %s (%s); the shard goes to another worker",
                            worker, shard, type(exc).__name__)
                dead.add(worker)
                pending.appendleft(shard)
                continue
            except Exception as exc:  # noqa: BLE001 - an error inside the shard: fail the run
                raise _cause(exc) from None
            seconds += manifest["seconds"]
            idle.append(worker)
            bar.update((shard[1] - shard[0]) * config.seq_len)
    finally:
        bar.close()
    return seconds
