"""One runner for the stages that ask an LLM (explain, score): connect, open the backend, start the run
row, feed the call log's single writer, queue the requests, show progress, drive the jobs, and mark the
run complete or failed.

    with stage_connection(db) as con:                     # connect; refresh the summary and close at the end
        ...                                               # validate the request (no backend opened yet)
        async with stage_backend(config, executor) as backend:
            run = StageRun(con, "score", backend, config)  # run id, call log writer, LLM queue
            run.start(resolved_config, identity)           # the runs row
            await run.drive(jobs, limit, total=n, unit="score", progress=True)
            run.complete(counts)                          # or failed, with the reason, when drive raises

Jobs are callables returning coroutines (``llm.jobs.drive``), at most ``limit`` pending; they hand what
they produce to ``run.writer`` and call ``run.tick()`` when done. Sits above ``store`` and ``llm`` and
below the stages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator

from tqdm.auto import tqdm

from .executor import Executor, or_local
from .llm.base import Backend, Completion, GenerateOptions, TokenLogprob
from .llm.jobs import drive
from .llm.queue import LLMQueue, QueueConfig
from .store import runs
from .store.db import connect
from .store.llm_log import CallLogWriter, StoredResponse, cached_responses, request_hash
from .store.summary import refresh_summary_quietly

#: Latents whose jobs are prepared together (one query for their data).
CHUNK = 128

#: Runs started on each open stage connection (by ``id(con)``) and not yet finished.
_unfinished: dict[int, list[StageRun]] = {}


@contextlib.contextmanager
def stage_connection(db) -> Iterator:
    """A connection to the database ``db`` for one stage. Earlier runs whose process is gone are marked
    ``interrupted`` first; a run started on it that an exception ends before it finished is marked
    ``failed`` with the reason (wherever the exception came from); the latent summary is refreshed and
    the connection closed at the end, whatever happened."""
    con = connect(db)
    _unfinished[id(con)] = []
    try:
        runs.mark_dead_runs_interrupted(con)
        yield con
    except BaseException as exc:
        for run in _unfinished[id(con)]:
            run.fail(exc)
        raise
    finally:
        del _unfinished[id(con)]
        refresh_summary_quietly(con)
        con.close()


@contextlib.asynccontextmanager
async def stage_backend(
    config, executor: Executor | None = None, *, needed: bool = True, backend: Backend | None = None
):
    """The LLM backend of one run: ``backend`` when given (already open: a test's or a benchmark's, left
    open), else a bare ``Backend`` when no LLM is ``needed`` (nothing loaded, nothing started), else the
    one ``config`` names, opened with ``executor`` and closed at the end."""
    if backend is not None:
        yield backend
    elif not needed:
        yield Backend()
    else:
        async with or_local(executor).open_backend(config) as opened:
            yield opened


class ResumingQueue:
    """The run's way to ask the LLM: a request answered successfully before (by any earlier run on this
    database, for the same backend and model, with the same messages and options) is answered from the
    call log and not sent again; any other goes through the ``LLMQueue``. This is what makes a run killed
    at any point resume without paying twice for a call."""

    def __init__(self, queue: LLMQueue, writer: CallLogWriter, cache: dict[str, StoredResponse]):
        self.queue, self.writer, self.cache = queue, writer, cache
        self.backend = queue.backend
        self.stats = queue.stats
        self.reused = 0

    async def run(self, messages: list[dict], options: GenerateOptions, item: str, purpose: str) -> Completion:
        hit = self.cache.get(request_hash(self.backend.kind, self.backend.model, messages, options))
        if hit is None:
            return await self.queue.run(messages, options, item, purpose)
        self.reused += 1
        self.writer.reuse_call(item, hit.call_id)
        logprobs = None
        if hit.logprobs_json is not None:
            logprobs = [TokenLogprob(**t) for t in json.loads(hit.logprobs_json)]
        return Completion(hit.text, hit.prompt_tokens, hit.completion_tokens, logprobs=logprobs)


class StageRun:
    """One run of stage ``stage``: its run id, its call log writer and its LLM queue over ``backend``
    (throttled and retried as ``config``, an ``LLMConfig``, says)."""

    def __init__(self, con, stage: str, backend: Backend, config):
        self.con, self.stage, self.backend = con, stage, backend
        self.run_id = runs.new_run_id(stage)
        self.writer = CallLogWriter(con, self.run_id, stage, backend.kind, backend.model)
        self.queue = LLMQueue(
            backend,
            QueueConfig(config.max_in_flight, config.rps, config.tpm, config.max_retries, config.backoff_base),
            on_call=self.writer.log_call,
        )
        self.llm = ResumingQueue(self.queue, self.writer, cached_responses(con, backend.kind, backend.model))
        self.bar = None
        self.finished = True  # until start(): nothing to mark
        self.seconds = 0.0
        self._start = time.perf_counter()

    def start(self, config: dict, config_hash: str) -> None:
        """Write the run's row: its resolved configuration and the hash of what shapes its results."""
        runs.start_run(self.con, self.run_id, self.stage, config, config_hash)
        self.finished = False
        _unfinished.setdefault(id(self.con), []).append(self)

    def fail(self, exc: BaseException) -> None:
        """Mark the run failed with the reason ``exc`` gives (once)."""
        if not self.finished:
            self.finished = True
            runs.fail_run(self.con, self.run_id, runs.failure_reason(exc))

    def elapsed(self) -> float:
        """Seconds since the jobs started."""
        return time.perf_counter() - self._start

    async def drive(self, jobs, limit: int, *, total: int, unit: str, progress: bool = True) -> None:
        """Run ``jobs`` at most ``limit`` at a time while the writer stores what they produce, with a
        progress bar of ``total`` ``unit``; flush the writer at the end. On any failure, mark the run
        failed with the reason and re-raise."""
        self.bar = tqdm(total=total, unit=unit, disable=not progress, desc=self.stage, dynamic_ncols=True)
        self._start = time.perf_counter()
        writer_task = asyncio.create_task(self.writer.run())
        try:
            await drive(jobs, limit)
            await self.writer.close()
            await writer_task
        except BaseException as exc:
            writer_task.cancel()
            self.fail(exc)
            raise
        finally:
            self.bar.close()
            self.seconds = self.elapsed()

    async def drive_chunks(
        self, latents, read, jobs_for, limit: int, *, total: int, unit: str, progress=True, chunk: int = CHUNK
    ):
        """``drive`` the jobs of ``latents``, prepared a chunk at a time ahead of the queue:
        ``read(cursor, chunk)`` fetches what a chunk's jobs need in one query (on a cursor of its own,
        never waiting on the writer), and ``jobs_for(chunk, data)`` yields their jobs."""
        cur = self.con.cursor()

        def jobs():
            for i in range(0, len(latents), chunk):
                part = latents[i : i + chunk]
                yield from jobs_for(part, read(cur, part))

        try:
            await self.drive(jobs(), limit, total=total, unit=unit, progress=progress)
        finally:
            cur.close()

    def tick(self, **postfix) -> None:
        """One job done; ``postfix`` shows counts beside the bar."""
        self.bar.update(1)
        if postfix:
            self.bar.set_postfix(**postfix, refresh=False)

    def complete(self, summary: dict) -> dict:
        """Mark the run complete; its summary is ``summary`` with the seconds and the queue's calls,
        retries and tokens. Returns that summary."""
        stats = self.queue.stats
        summary = {
            **summary,
            "seconds": round(self.seconds, 2),
            "calls": stats.calls,
            "reused_calls": self.llm.reused,
            "retries": stats.retries,
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
        }
        runs.complete_run(self.con, self.run_id, summary)
        self.finished = True
        return summary
