"""``autointerp collect --executor ray``: the corpus sharded by sequence range over Ray workers.

1. The driver (this process) checks the database as a local collect does, starts the workers (Ray
   actors: one GPU each on a GPU cluster) and has each load the subject model and the dictionary.
2. The sequences ``0 .. n`` are cut into shards of whole batches. A shard starts at a multiple of the
   batch size, so its batches are exactly the batches of a single pass: the same inputs, bitwise the
   same activations. Each idle worker takes the next shard, streams it through model -> dictionary ->
   sampler with global sequence numbers (every random choice is a hash of them, see
   ``sample/hashing.py``) and writes the sampler's state as a Parquet part (``shard_parts.py``). A
   worker keeps only its own shard's candidates.
3. As soon as a job's shards are all on disk, the driver merges its parts one at a time into one sampler
   (``StreamingSampler.absorb``: largest keys with ties broken by sequence, counts added, a compensated
   sum), selects the explain and test sets and writes the run exactly as a local collect does, in one
   transaction. The result equals a single-process collect with the same configuration, row for row
   (tests/test_scale_collect.py).

Several jobs (one per hookpoint or dictionary, each with its own database: ``autointerp collect --jobs``)
share one pool of workers: their shards are interleaved, a worker keeps the job it last loaded and
prefers that job's shards, and each job is merged and written as soon as its own shards are done.

Failures: a worker that dies loses only the shard it was running; the shard goes back in the queue
and the job finishes on the other workers. Finished shards stay on disk under ``--parts-dir`` (by
default DB.parts/<config hash>) until the merged result is committed, so a rerun of a failed job
redoes only unfinished shards. Packing joins documents, so where a shard's first sequence begins
depends on all text before it: one worker finds every shard's start (document, token offset) in one
tokenizing pass before the shards run (kept as positions.json with the parts), and each shard then
skips whole documents untokenized. At a billion tokens that one serial pass is the cost to remove
next (docs/scaling.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
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


@dataclass
class _Job:
    """One collect of a several-job run: its database, identity and shards."""

    index: int
    con: object
    db: Path
    config: CollectConfig
    identity: str
    earlier: list[str]
    parts: Path
    shards: list[tuple[int, int]] = field(default_factory=list)
    reused: list[tuple[int, int]] = field(default_factory=list)
    meta: dict | None = None
    run_id: str = ""
    finished: int = 0
    positions: dict = field(default_factory=dict)  # shard -> [document, offset] where it begins
    worker_seconds: float = 0.0
    result: local.CollectResult | None = None


class CollectWorker:
    """One Ray actor: loads a job's model and dictionary (keeping the last one loaded) and streams
    shards of it into parts."""

    def __init__(self, configs: list[dict]):
        self.configs = [CollectConfig(**c) for c in configs]
        self.job = None
        self.subject = self.dictionary = self.corpus = self.meta = None

    def load(self, job: int) -> dict:
        if job == self.job:
            return self.meta
        from ..corpus import open_corpus
        from ..models.subject import load_subject_model
        from ..sample import dictionary as dictionaries

        self.job = self.subject = self.dictionary = self.corpus = None  # free the previous job's model first
        config = self.configs[job]
        req = dictionaries.request(config)
        self.subject = load_subject_model(config.model, "", config.device, config.dtype)
        self.dictionary, hookpoint = dictionaries.attach(req, config, self.subject)
        self.dictionary.to(self.subject.device)
        self.corpus = open_corpus(config.dataset, config.split, config.text_column, config.dataset_config)
        self.job = job
        self.meta = {
            "hookpoint": hookpoint,
            "n_latents": int(self.dictionary.d_sae),
            "signed": bool(self.dictionary.signed),
            "resolved": {
                **dictionaries.describe(req, self.dictionary, config),
                "model": self.subject.name,
                "device": str(self.subject.device),
                "dtype": str(self.subject.dtype),
            },
        }
        return self.meta

    @property
    def config(self) -> CollectConfig:
        return self.configs[self.job]

    def locate(self, job: int, starts: list[int]) -> tuple[list, int | None]:
        """Where each shard start begins in the corpus (one tokenizing pass; ``SequencePacker.locate``)."""
        from ..corpus import SequencePacker, texts_of

        self.load(job)
        packer = SequencePacker(self.subject.tokenizer, self.config.seq_len)
        return packer.locate(texts_of(self.corpus, self.config.text_column), starts)

    def run_shard(
        self, job: int, first: int, last: int, folder: str, identity: str, position: list[int] | None = None
    ) -> dict:
        self.load(job)
        sampler, made, seconds = local.stream(
            self.config,
            self.subject,
            self.dictionary,
            self.corpus,
            first,
            last,
            progress=False,
            position=None if position is None else tuple(position),
        )
        manifest = {
            "first": first,
            "last": last,
            "made": made,
            "seconds": seconds,
            "identity": identity,
            "pid": os.getpid(),
        }
        write_part(Path(folder), sampler.state(), manifest)
        return manifest

    def decode(self, job: int, ids: list[int]) -> list[str]:
        self.load(job)
        return self.subject.tokenizer.batch_decode([[int(i)] for i in ids])

    def pid(self) -> int:
        return os.getpid()


def _cause(exc: Exception) -> Exception:
    """The exception raised inside a Ray task (Ray wraps it)."""
    return getattr(exc, "cause", None) or exc


def collect_on_ray(
    targets: list[tuple[object, Path, CollectConfig]],
    executor: ExecutorConfig,
    overwrite: bool,
    progress: bool,
    worker_class: type = CollectWorker,
) -> list[local.CollectResult]:
    """Collect each (open connection, database path, config) over one pool of Ray workers; see the
    module docstring. ``worker_class`` lets a test inject faults into real workers."""
    jobs, results = [], {}
    for i, (con, db, config) in enumerate(targets):
        _, identity = local.collect_identity(config)
        earlier, done = local.check_earlier(con, identity, overwrite)
        if done is not None:
            results[i] = local.CollectResult(run_id=done.run_id, skipped=True)
            continue
        jobs.append(
            _Job(
                i,
                con,
                Path(db),
                config,
                identity,
                [r.run_id for r in earlier],
                Path(executor.parts_dir or f"{db}.parts") / identity,
            )
        )
    if jobs:
        with ray_cluster(executor) as cluster:
            ray = import_ray()
            actor_class = ray.remote(
                num_cpus=cluster.cpus_per_worker, num_gpus=cluster.gpus_per_worker, max_restarts=0
            )(worker_class)
            configs = [config.to_dict() for _, _, config in targets]
            actors = [actor_class.remote(configs) for _ in range(cluster.workers)]
            try:
                _run(jobs, executor, actors, cluster, progress)
            finally:
                for actor in actors:
                    ray.kill(actor)
        results.update({job.index: job.result for job in jobs})
    return [results[i] for i in range(len(targets))]


def _load(jobs: list[_Job], actors: list, dead: set[int], loaded: dict[int, int]) -> None:
    """Load every job's model and dictionary once (on workers in turn), so that a bad model, dictionary
    or corpus fails before any run starts; records each job's description and each worker's job."""
    ray = import_ray()
    from ray.exceptions import RayActorError

    pending = list(jobs)
    while pending:
        alive = [i for i in range(len(actors)) if i not in dead]
        if not alive:
            raise AutointerpError(
                "Every Ray worker died while loading the model and the dictionary.",
                "workers with enough memory for the subject model and the dictionary.",
                "see the Ray logs (/tmp/ray/session_latest/logs) of the workers.",
            )
        # one job per live worker at a time, all loading at once
        batch = [
            (worker, job, actors[worker].load.remote(job.index)) for worker, job in zip(alive, pending, strict=True)
        ]
        pending = pending[len(batch) :]
        for worker, job, ref in batch:
            try:
                job.meta = ray.get(ref)
                loaded[worker] = job.index
            except RayActorError as exc:
                log.warning("Ray worker %d died while loading: %s", worker, exc)
                dead.add(worker)
                pending.append(job)
            except Exception as exc:  # noqa: BLE001 - a task error: a bad model, SAE or corpus
                raise _cause(exc) from None


def _run(jobs: list[_Job], executor, actors, cluster, progress) -> None:
    dead: set[int] = set()
    loaded: dict[int, int] = {}
    start = time.perf_counter()
    _load(jobs, actors, dead, loaded)
    try:
        for job in jobs:
            job.shards = plan_shards(local.n_sequences(job.config), job.config, executor, cluster.workers)
            job.parts.mkdir(parents=True, exist_ok=True)
            job.reused = [
                s
                for s in job.shards
                if (m := read_manifest(job.parts / shard_name(*s))) and m.get("identity") == job.identity
            ]
            job.finished = len(job.reused)
            _locate(job, actors, dead, loaded)
            job.run_id = runs.new_run_id("collect")
            stored = {
                **job.config.to_dict(),
                "hookpoint": job.meta["hookpoint"],
                "resolved": job.meta["resolved"],
                "executor": {
                    "executor": "ray",
                    "workers": cluster.workers,
                    "gpus_per_worker": cluster.gpus_per_worker,
                    "shards": len(job.shards),
                    "shard_sequences": job.shards[0][1] - job.shards[0][0],
                    "reused_shards": len(job.reused),
                    "parts_dir": str(job.parts),
                },
            }
            runs.start_run(job.con, job.run_id, "collect", stored, job.identity)
        for job in jobs:
            if job.finished == len(job.shards):
                _merge_and_write(job, actors, dead, loaded, cluster, start)
        _dispatch(jobs, actors, dead, loaded, cluster, progress, start)
    except BaseException as exc:
        for job in jobs:
            if job.run_id and job.result is None:
                runs.fail_run(job.con, job.run_id, runs.failure_reason(exc))
        raise


def _on_a_worker(job: _Job, actors, dead: set[int], loaded: dict[int, int], method: str, *args, doing: str):
    """``method(job.index, *args)`` on a live worker, the one holding the job if any; when it dies the
    call goes to another."""
    ray = import_ray()
    from ray.exceptions import RayActorError

    while True:
        alive = [i for i in range(len(actors)) if i not in dead]
        if not alive:
            raise AutointerpError(
                f"Every Ray worker died while {doing}.",
                "workers that stay up.",
                f"rerun the same command: the finished shards are kept in {job.parts}.",
            )
        worker = next((i for i in alive if loaded.get(i) == job.index), alive[0])
        try:
            result = ray.get(getattr(actors[worker], method).remote(job.index, *args))
        except RayActorError as exc:
            log.warning("Ray worker %d died while %s (%s)", worker, doing, type(exc).__name__)
            dead.add(worker)
            loaded.pop(worker, None)
            continue
        except Exception as exc:  # noqa: BLE001 - a task error: an unreadable corpus, a broken tokenizer
            raise _cause(exc) from None
        loaded[worker] = job.index
        return result


def _locate(job: _Job, actors, dead: set[int], loaded: dict[int, int]) -> None:
    """Find where each shard begins in the corpus with one tokenizing pass on a worker (kept in the
    parts folder for a rerun), so that a shard seeks there instead of tokenizing all text before it.
    A corpus too short for the shards fails here, before any shard runs."""
    plan_file = job.parts / "positions.json"
    bounds = [list(s) for s in job.shards]
    if plan_file.exists():
        plan = json.loads(plan_file.read_text())
        if plan.get("identity") == job.identity and plan.get("shards") == bounds:
            job.positions = {tuple(b): p for b, p in zip(bounds, plan["positions"], strict=True)}
            return
    todo = [s for s in job.shards if s[0] > 0]
    if not todo:
        return
    found, available = _on_a_worker(
        job, actors, dead, loaded, "locate", [s[0] for s in todo], doing="locating the shards in the corpus"
    )
    if available is not None and available < local.n_sequences(job.config):
        raise local.corpus_too_short(job.config, available)
    job.positions = {s: list(p) for s, p in zip(todo, found, strict=True)}
    plan_file.write_text(
        json.dumps(
            {"identity": job.identity, "shards": bounds, "positions": [job.positions.get(tuple(b)) for b in bounds]}
        )
    )


def _dispatch(jobs: list[_Job], actors, dead: set[int], loaded: dict[int, int], cluster, progress, start) -> None:
    """Hand shards to idle workers (a worker prefers the job it has loaded) until every job is written;
    a worker that dies gives its shard back."""
    ray = import_ray()
    from ray.exceptions import RayActorError

    by_index = {job.index: job for job in jobs}
    pending = {job.index: deque(s for s in job.shards if s not in job.reused) for job in jobs}
    idle = [i for i in range(len(actors)) if i not in dead]
    in_flight: dict = {}
    total = sum((s[1] - s[0]) * job.config.seq_len for job in jobs for s in pending[job.index])
    bar = tqdm(
        total=total,
        unit="tok",
        unit_scale=True,
        disable=not progress,
        desc=f"collect ({len(idle)} Ray workers, {len(jobs)} job(s))",
        dynamic_ncols=True,
    )
    try:
        while any(pending.values()) or in_flight:
            while idle and any(pending.values()):
                worker = idle.pop(0)
                mine = loaded.get(worker)
                index = mine if pending.get(mine) else max(pending, key=lambda j: len(pending[j]))
                job, shard = by_index[index], pending[index].popleft()
                ref = actors[worker].run_shard.remote(
                    index, *shard, str(job.parts / shard_name(*shard)), job.identity, job.positions.get(shard)
                )
                loaded[worker] = index
                in_flight[ref] = (worker, index, shard)
            if not in_flight:
                left = sum(len(q) for q in pending.values())
                raise AutointerpError(
                    f"Every Ray worker died; {left} shard(s) were not collected. The finished ones are kept in "
                    + ", ".join(str(job.parts) for job in jobs if job.result is None)
                    + ".",
                    "workers that stay up.",
                    "rerun the same command: it resumes there.",
                )
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            worker, index, shard = in_flight.pop(ready[0])
            job = by_index[index]
            try:
                manifest = ray.get(ready[0])
            except RayActorError as exc:
                log.warning(
                    "Ray worker %d died running shard %s of %s (%s); the shard goes to another worker",
                    worker,
                    shard,
                    job.db,
                    type(exc).__name__,
                )
                dead.add(worker)
                loaded.pop(worker, None)
                pending[index].appendleft(shard)
                continue
            except Exception as exc:  # noqa: BLE001 - an error inside the shard: fail the run
                raise _cause(exc) from None
            job.worker_seconds += manifest["seconds"]
            job.finished += 1
            idle.append(worker)
            bar.update((shard[1] - shard[0]) * job.config.seq_len)
            if job.finished == len(job.shards):
                _merge_and_write(job, actors, dead, loaded, cluster, start)
    finally:
        bar.close()


def _merge_and_write(job: _Job, actors, dead: set[int], loaded: dict[int, int], cluster, start) -> None:
    """Merge a job's parts in shard order, write the run as a local collect would, drop the parts."""
    import torch

    config, meta = job.config, job.meta
    sampler = StreamingSampler(local.sampler_sizes(config, meta["n_latents"], meta["signed"]), torch.device("cpu"))
    n_seqs = local.n_sequences(config)
    available = n_seqs
    merge_start = time.perf_counter()
    for first, last in job.shards:
        state, manifest = read_part(job.parts / shard_name(first, last))
        if manifest["made"] < last - first:
            available = min(available, first + manifest["made"])
        sampler.absorb(state)
    if available < n_seqs:
        raise local.corpus_too_short(config, available)
    sampler.finish()
    merge_seconds = time.perf_counter() - merge_start

    def token_strings(ids):
        return _on_a_worker(job, actors, dead, loaded, "decode", [int(i) for i in ids], doing="decoding tokens")

    collection = {
        "model": meta["resolved"]["model"],
        "hookpoint": meta["hookpoint"],
        "sae": meta["resolved"]["sae_path"],
    }
    job.result = local.select_and_write(
        job.con,
        job.run_id,
        config,
        sampler,
        collection,
        token_strings,
        job.earlier,
        time.perf_counter() - start,
        {
            "executor": "ray",
            "workers": cluster.workers,
            "workers_died": len(dead),
            "shards": len(job.shards),
            "reused_shards": len(job.reused),
            "worker_seconds": round(job.worker_seconds, 2),
            "merge_seconds": round(merge_seconds, 2),
        },
    )
    shutil.rmtree(job.parts, ignore_errors=True)  # merged and committed: the parts are no longer needed
    if job.parts.parent.is_dir() and not any(job.parts.parent.iterdir()):
        job.parts.parent.rmdir()
