"""Which latent the request being sent belongs to, for backends that route by it.

The explain and score stages set ``current_latent`` at the start of each per-latent job; the job's
requests (and the child tasks that ``asyncio.gather`` makes for a score's batches, which inherit the
context) carry it down to ``backend.generate`` without widening the Backend interface. A Ray worker
pool (autointerp/scale/llm_pool.py) uses it to send all of a latent's requests to the same worker, so
their shared prompt prefix stays in that worker's cache. Other backends ignore it.
"""

from __future__ import annotations

from contextvars import ContextVar

current_latent: ContextVar[int | None] = ContextVar("autointerp_current_latent", default=None)
