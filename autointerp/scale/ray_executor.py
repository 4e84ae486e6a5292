"""``RayExecutor``: a stage's work on the workers of a Ray cluster (``--executor ray``).

LLM calls go to a pool of Ray workers that each build their own backend (``llm_pool.py``); sharded work
(collect) runs on Ray actors that each set a job up once (``shards.py``). ``make_executor`` turns the
CLI's ``ExecutorConfig`` into an executor.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from ..config import ExecutorConfig, LLMConfig
from ..executor import Executor, LocalExecutor, ShardedJob
from ..llm.base import Backend
from .cluster import import_ray, ray_cluster
from .shards import ShardRun, ShardWorker


class RayExecutor:
    """Runs a stage's work on Ray workers; see the module docstring. ``worker_class`` (a ``ShardWorker``)
    lets a test inject faults into real workers."""

    def __init__(self, config: ExecutorConfig, worker_class: type = ShardWorker):
        self.config = config
        self.worker_class = worker_class

    @property
    def parts_dir(self) -> str:
        return self.config.parts_dir

    @contextlib.asynccontextmanager
    async def open_backend(self, config: LLMConfig) -> AsyncIterator[Backend]:
        from .llm_pool import ray_pool

        async with ray_pool(config, self.config) as pool:
            yield pool

    def map_shards(self, jobs: Sequence[ShardedJob], progress: bool) -> None:
        with ray_cluster(self.config) as cluster:
            ray = import_ray()
            actor_class = ray.remote(
                num_cpus=cluster.cpus_per_worker, num_gpus=cluster.gpus_per_worker, max_restarts=0
            )(self.worker_class)
            steps = [job.step for job in jobs]
            actors = [actor_class.remote(steps) for _ in range(cluster.workers)]
            try:
                ShardRun(jobs, actors, cluster, self.config.shard_tokens).run(progress)
            finally:
                for actor in actors:
                    ray.kill(actor)


def make_executor(config: ExecutorConfig | None) -> Executor:
    """The executor ``config`` names: ``LocalExecutor`` or ``RayExecutor``."""
    if config is not None and config.is_ray:
        return RayExecutor(config)
    return LocalExecutor()
