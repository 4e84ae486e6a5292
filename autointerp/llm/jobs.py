"""Drive many per-item coroutines with a bounded number pending, so that work for millions of latents
is prepared lazily (a generator can read the database between items) and never all at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable


async def drive(jobs: Iterable[Callable[[], Awaitable[None]]], limit: int) -> None:
    """Run ``job()`` for each job, at most ``limit`` at a time; on the first failure cancel the rest and
    re-raise it."""
    pending: set[asyncio.Task] = set()
    try:
        for job in jobs:
            while len(pending) >= limit:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    task.result()
            pending.add(asyncio.create_task(job()))
        for task in asyncio.as_completed(pending):
            await task
    except BaseException:
        for task in pending:
            task.cancel()
        raise
