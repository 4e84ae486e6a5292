"""Where a stage's work runs: the executor protocol and the in-process executor.

A stage never asks whether it runs on Ray (datatrove's pipeline steps and executors): it hands its
work to an ``Executor``, which decides where that work runs. Two kinds of work:

- LLM calls (explain, score): ``executor.open_backend(config)`` yields the run's ``Backend``. This
  process builds it here; ``RayExecutor`` (``autointerp/scale/``) yields a pool of Ray workers that
  each build their own.
- Sharded work (collect): each job is a ``ShardedJob``. The executor sets a job up once where its
  shards run (``step.setup``: collect loads the model, dictionary and corpus), runs the shards there
  (``step.run``) and hands the results back to the job in this process (``job.reduce``). Here that is
  one process, one job after another; ``RayExecutor`` spreads every job's shards over one pool of
  workers, keeps finished shards on disk (``step.save``) and resumes from them.

Only the CLI (and the stages' default, ``LocalExecutor()``) builds an executor from ``ExecutorConfig``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .config import ExecutorConfig, LLMConfig
from .errors import AutointerpError
from .llm.base import Backend
from .llm.factory import make_backend


@dataclass(frozen=True)
class Shard:
    """Items ``first`` to ``last`` - 1 of a job (collect: sequences of the corpus), and where the step
    starts reading them (``start``: collect's located (document, offset); None to read from the
    beginning)."""

    first: int
    last: int
    start: tuple | None = None

    @property
    def size(self) -> int:
        return self.last - self.first


Call = Callable[..., Any]
"""``call(fn, *args)`` runs ``fn(loaded, *args)`` where a job is set up (``loaded`` is what the job's
``step.setup`` returned) and returns its result: how a job's driver side reaches its model."""


class ShardStep(Protocol):
    """The part of a job that runs where the executor puts it. A Ray executor pickles it to its
    workers, so it holds plain data (a configuration, a folder), never an open database."""

    parts: Path
    """Folder where ``save`` keeps finished shards (named in messages about a resume)."""

    def setup(self) -> Any:
        """Load what every shard needs; once per job on each worker that runs it."""

    def run(self, loaded: Any, shard: Shard, progress: bool) -> Any:
        """One shard's result (collect: a sampler)."""

    def save(self, result: Any, shard: Shard) -> None:
        """Keep a shard's result where the driver and a later run can read it (resume at the shard)."""

    def saved(self, shard: Shard) -> bool:
        """Whether a finished result of ``shard``, for this very job, is kept from an earlier run."""

    def load(self, shard: Shard) -> Any:
        """A result kept by ``save``, read back in the driver."""


class ShardedJob(Protocol):
    """One job of sharded work as a stage hands it to an executor (collect: one database)."""

    step: ShardStep
    tokens_per_item: int
    """Progress units (tokens) per item of a shard."""

    def plan(self, shards: int, shard_tokens: int, call: Call) -> list[Shard]:
        """The job's shards: about ``shards`` of them, or ``shard_tokens`` tokens each when not 0
        (``call`` runs a function where the job is set up, e.g. to measure its input first)."""

    def prepare(self, shards: list[Shard], call: Call, info: dict) -> list[Shard]:
        """Before any shard runs: check, start the run (storing the executor's ``info``) and return the
        shards, each with where it starts."""

    def reduce(self, results: Iterable[Any], call: Call, seconds: float, summary: dict) -> None:
        """Merge the shards' results (in shard order) and write them; ``summary``: the executor's figures."""

    def fail(self, exc: BaseException) -> None:
        """Record that the job's run failed (if it started and did not finish)."""


class Executor(Protocol):
    """Decides where a stage's work runs."""

    parts_dir: str
    """Folder for the kept results of sharded work; empty: the stage picks one (collect: DB.parts)."""

    def open_backend(self, config: LLMConfig) -> AbstractAsyncContextManager[Backend]:
        """The run's LLM backend, closed at the end."""

    def map_shards(self, jobs: Sequence[ShardedJob], progress: bool) -> None:
        """Run every job's shards and hand each job its results (``job.reduce``)."""


class LocalExecutor:
    """Everything in this process: the backend built here, jobs run one after another, each set up once
    (one shard per job unless ``shard_tokens`` cuts more; the result is the same)."""

    parts_dir = ""

    def __init__(self, shard_tokens: int = 0):
        self.shard_tokens = shard_tokens

    @contextlib.asynccontextmanager
    async def open_backend(self, config: LLMConfig) -> AsyncIterator[Backend]:
        backend = make_backend(config.backend, config.model, config.base_url, config.api_key_env, config.timeout)
        try:
            yield backend
        finally:
            await backend.aclose()

    def map_shards(self, jobs: Sequence[ShardedJob], progress: bool) -> None:
        for job in jobs:
            try:
                loaded = job.step.setup()

                def call(fn, *args, loaded=loaded):
                    return fn(loaded, *args)

                shards = job.prepare(job.plan(1, self.shard_tokens, call), call, {})
                start = time.perf_counter()
                results = [job.step.run(loaded, shard, progress) for shard in shards]
                job.reduce(results, call, time.perf_counter() - start, {})
            except BaseException as exc:
                job.fail(exc)
                raise


def or_local(executor: Executor | None) -> Executor:
    """A stage's ``executor`` argument: itself, or ``LocalExecutor()`` for None. An ``ExecutorConfig``
    is refused with the way to build its executor (stages never read it themselves)."""
    if isinstance(executor, ExecutorConfig):
        raise AutointerpError(
            "A stage was given an ExecutorConfig; it takes an executor.",
            "an Executor: LocalExecutor() (autointerp.executor) or RayExecutor(config) (autointerp.scale).",
            "pass autointerp.scale.make_executor(config).",
        )
    return executor if executor is not None else LocalExecutor()
