"""Sharded work on Ray workers (``RayExecutor.map_shards``; collect's ``--executor ray``).

1. The driver (this process) starts the workers (Ray actors: one GPU each on a GPU cluster) and has
   them set up every job at once (``step.setup``: collect loads the subject model, the dictionary and
   the corpus), so that a bad model, dictionary or corpus fails before any run starts.
2. For each job, the driver plans its shards (whole batches of sequences for collect), notes those a
   failed earlier run already finished (``step.saved``) and prepares the job (``job.prepare``: collect
   finds where every shard begins in the corpus with one tokenizing pass on a worker, and starts its run).
3. Each idle worker takes the next shard, runs it (``step.run``) and keeps its result on disk
   (``step.save``: collect writes the sampler's state as Parquet). A worker keeps the job it last set up
   and prefers that job's shards, so several jobs (``autointerp collect --jobs``) share one pool.
4. As soon as a job's shards are all on disk, the driver reads them back one at a time, in shard order
   (``step.load``), and hands them to the job (``job.reduce``: collect merges, selects and writes the
   run exactly as a local collect does). The result equals a single-process run, row for row
   (tests/test_scale_collect.py).

Failures: a worker that dies loses only the shard it was running; the shard goes back in the queue and
the job finishes on the other workers. Finished shards stay on disk until the job's result is
committed, so a rerun of a failed job redoes only unfinished shards.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence

from tqdm.auto import tqdm

from ..errors import AutointerpError
from ..executor import Shard, ShardedJob, ShardStep
from .cluster import Cluster, import_ray

log = logging.getLogger(__name__)
SHARDS_PER_WORKER = 4
"""Shards per worker when --shard-tokens is 0: a failure redoes at most a quarter of a worker's share."""


class ShardWorker:
    """One Ray actor: sets a job up (keeping the last one set up) and runs its shards."""

    def __init__(self, steps: list[ShardStep]):
        self.steps = steps
        self.job: int | None = None
        self.loaded = None

    def load(self, job: int) -> None:
        if job == self.job:
            return
        self.job = self.loaded = None  # free the previous job's model first
        self.loaded = self.steps[job].setup()
        self.job = job

    def call(self, job: int, fn, *args):
        """``fn(loaded, *args)`` with the job set up here."""
        self.load(job)
        return fn(self.loaded, *args)

    def run(self, job: int, shard: Shard) -> float:
        """Run one shard and keep its result on disk; the seconds it took."""
        self.load(job)
        start = time.perf_counter()
        step = self.steps[job]
        step.save(step.run(self.loaded, shard, False), shard)
        return time.perf_counter() - start

    def pid(self) -> int:
        import os

        return os.getpid()


def _cause(exc: Exception) -> Exception:
    """The exception raised inside a Ray task (Ray wraps it)."""
    return getattr(exc, "cause", None) or exc


class ShardRun:
    """The driver of one ``map_shards``: the workers, which of them died and which job each holds."""

    def __init__(self, jobs: Sequence[ShardedJob], actors: list, cluster: Cluster, shard_tokens: int):
        self.jobs = list(jobs)
        self.actors = actors
        self.cluster = cluster
        self.shard_tokens = shard_tokens
        self.dead: set[int] = set()
        self.loaded: dict[int, int] = {}  # worker -> job it holds
        self.shards: dict[int, list[Shard]] = {}
        self.reused: dict[int, list[Shard]] = {}
        self.finished: dict[int, int] = {}
        self.worker_seconds: dict[int, float] = {}
        self.done: set[int] = set()
        self.start = time.perf_counter()

    def run(self, progress: bool) -> None:
        self._load()
        try:
            for j, job in enumerate(self.jobs):
                shards = job.plan(SHARDS_PER_WORKER * self.cluster.workers, self.shard_tokens, self._caller(j))
                reused = [s for s in shards if job.step.saved(s)]
                info = {
                    "executor": "ray",
                    "workers": self.cluster.workers,
                    "gpus_per_worker": self.cluster.gpus_per_worker,
                    "reused_shards": len(reused),
                }
                self.shards[j] = job.prepare(shards, self._caller(j), info)
                kept = {(s.first, s.last) for s in reused}
                self.reused[j] = [s for s in self.shards[j] if (s.first, s.last) in kept]
                self.finished[j] = len(self.reused[j])
                self.worker_seconds[j] = 0.0
            for j in range(len(self.jobs)):
                if self.finished[j] == len(self.shards[j]):
                    self._reduce(j)
            self._dispatch(progress)
        except BaseException as exc:
            for job in self.jobs:
                job.fail(exc)
            raise

    def _alive(self) -> list[int]:
        return [i for i in range(len(self.actors)) if i not in self.dead]

    def _load(self) -> None:
        """Set every job up once (on workers in turn, all at once); records each worker's job."""
        ray = import_ray()
        from ray.exceptions import RayActorError

        pending = list(range(len(self.jobs)))
        while pending:
            alive = self._alive()
            if not alive:
                raise AutointerpError(
                    "Every Ray worker died while loading the model and the dictionary.",
                    "workers with enough memory for the subject model and the dictionary.",
                    "see the Ray logs (/tmp/ray/session_latest/logs) of the workers.",
                )
            # one job per live worker at a time, all loading at once
            batch = [(worker, j, self.actors[worker].load.remote(j)) for worker, j in zip(alive, pending, strict=False)]
            pending = pending[len(batch) :]
            for worker, j, ref in batch:
                try:
                    ray.get(ref)
                    self.loaded[worker] = j
                except RayActorError as exc:
                    log.warning("Ray worker %d died while loading: %s", worker, exc)
                    self.dead.add(worker)
                    pending.append(j)
                except Exception as exc:  # noqa: BLE001 - a task error: a bad model, SAE or corpus
                    raise _cause(exc) from None

    def _caller(self, j: int):
        def call(fn, *args):
            return self._on_a_worker(j, fn, *args)

        return call

    def _on_a_worker(self, j: int, fn, *args):
        """``fn(loaded, *args)`` on a live worker, the one holding job ``j`` if any; when it dies the call
        goes to another."""
        ray = import_ray()
        from ray.exceptions import RayActorError

        doing = getattr(fn, "__name__", "a call")
        while True:
            alive = self._alive()
            if not alive:
                raise AutointerpError(
                    f"Every Ray worker died while running {doing}.",
                    "workers that stay up.",
                    f"rerun the same command: the finished shards are kept in {self.jobs[j].step.parts}.",
                )
            worker = next((i for i in alive if self.loaded.get(i) == j), alive[0])
            try:
                result = ray.get(self.actors[worker].call.remote(j, fn, *args))
            except RayActorError as exc:
                log.warning("Ray worker %d died while running %s (%s)", worker, doing, type(exc).__name__)
                self.dead.add(worker)
                self.loaded.pop(worker, None)
                continue
            except Exception as exc:  # noqa: BLE001 - a task error: an unreadable corpus, a broken tokenizer
                raise _cause(exc) from None
            self.loaded[worker] = j
            return result

    def _dispatch(self, progress: bool) -> None:
        """Hand shards to idle workers (a worker prefers the job it holds) until every job is reduced;
        a worker that dies gives its shard back."""
        ray = import_ray()
        from ray.exceptions import RayActorError

        pending = {
            j: deque(s for s in self.shards[j] if s not in self.reused[j])
            for j in range(len(self.jobs))
            if j not in self.done
        }
        idle = self._alive()
        in_flight: dict = {}
        total = sum(s.size * self.jobs[j].tokens_per_item for j, q in pending.items() for s in q)
        bar = tqdm(
            total=total,
            unit="tok",
            unit_scale=True,
            disable=not progress,
            desc=f"collect ({len(idle)} Ray workers, {len(self.jobs)} job(s))",
            dynamic_ncols=True,
        )
        try:
            while any(pending.values()) or in_flight:
                while idle and any(pending.values()):
                    worker = idle.pop(0)
                    mine = self.loaded.get(worker)
                    j = mine if pending.get(mine) else max(pending, key=lambda k: len(pending[k]))
                    shard = pending[j].popleft()
                    ref = self.actors[worker].run.remote(j, shard)
                    self.loaded[worker] = j
                    in_flight[ref] = (worker, j, shard)
                if not in_flight:
                    left = sum(len(q) for q in pending.values())
                    kept = ", ".join(str(self.jobs[j].step.parts) for j in pending if j not in self.done)
                    raise AutointerpError(
                        f"Every Ray worker died; {left} shard(s) were not run. The finished ones are kept in {kept}.",
                        "workers that stay up.",
                        "rerun the same command: it resumes there.",
                    )
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                worker, j, shard = in_flight.pop(ready[0])
                try:
                    seconds = ray.get(ready[0])
                except RayActorError as exc:
                    log.warning(
                        "Ray worker %d died running shard %d-%d of job %d (%s); the shard goes to another worker",
                        worker,
                        shard.first,
                        shard.last,
                        j,
                        type(exc).__name__,
                    )
                    self.dead.add(worker)
                    self.loaded.pop(worker, None)
                    pending[j].appendleft(shard)
                    continue
                except Exception as exc:  # noqa: BLE001 - an error inside the shard: fail the run
                    raise _cause(exc) from None
                self.worker_seconds[j] += seconds
                self.finished[j] += 1
                idle.append(worker)
                bar.update(shard.size * self.jobs[j].tokens_per_item)
                if self.finished[j] == len(self.shards[j]):
                    self._reduce(j)
        finally:
            bar.close()

    def _reduce(self, j: int) -> None:
        """Hand job ``j`` its shards' results, read back one at a time in shard order."""
        job = self.jobs[j]
        summary = {
            "executor": "ray",
            "workers": self.cluster.workers,
            "workers_died": len(self.dead),
            "shards": len(self.shards[j]),
            "reused_shards": len(self.reused[j]),
            "worker_seconds": round(self.worker_seconds[j], 2),
        }
        results = (job.step.load(s) for s in self.shards[j])
        job.reduce(results, self._caller(j), time.perf_counter() - self.start, summary)
        self.done.add(j)
