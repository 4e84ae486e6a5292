"""The request queue: bounded concurrency, rate limits, retries with backoff, every call reported.

- ``max_in_flight`` requests run at once (a semaphore held only while a request is in flight: never
  while sleeping in backoff or waiting for the rate limiter);
- ``rps`` requests started per second (asyncio-throttle) and ``tpm`` tokens per minute (a token
  bucket fed with each request's estimated tokens), 0 meaning no limit;
- transient errors (rate limit, server error, timeout, connection, garbled reply) are retried up to
  ``max_retries`` times with exponential backoff and full jitter, honouring Retry-After; other errors
  fail that one request at once;
- every attempt, successful or not, is handed to ``on_call`` (the call log);
- a ``BackendGone`` (every Ray worker of the run died) is not an item's failure: it stops the run.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import Backend, BackendGone, Completion, GenerateOptions, PermanentError, TransientError


@dataclass
class QueueConfig:
    max_in_flight: int = 8
    rps: float = 0.0
    tpm: int = 0
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0


@dataclass
class CallRecord:
    """One attempt of one request, as the call log stores it."""

    item: str
    purpose: str
    messages: list[dict]
    options: GenerateOptions
    attempt: int
    started_at: float
    latency_s: float
    completion: Completion | None = None
    error: str | None = None


class RequestFailed(Exception):
    """The request failed for good; ``reason`` says why."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


@dataclass
class QueueStats:
    calls: int = 0
    failures: int = 0  # requests that failed for good
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    busy_seconds: float = 0.0  # time with at least one request in flight
    _busy_since: float | None = field(default=None, repr=False)


class TokenBucket:
    """At most ``per_minute`` tokens per minute, refilled continuously."""

    def __init__(self, per_minute: int):
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.rate = per_minute / 60.0
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, tokens: int) -> None:
        tokens = min(float(tokens), self.capacity)
        async with self._lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
                self.updated = now
                if self.level >= tokens:
                    self.level -= tokens
                    return
                await asyncio.sleep((tokens - self.level) / self.rate)


def estimate_tokens(messages: list[dict], options: GenerateOptions) -> int:
    """Rough token count for rate limiting: ~4 characters a token, plus the completion budget."""
    return sum(len(m.get("content", "")) for m in messages) // 4 + options.max_tokens


class LLMQueue:
    def __init__(
        self,
        backend: Backend,
        config: QueueConfig,
        on_call: Callable[[CallRecord], None] | None = None,
        sleep=asyncio.sleep,
    ):
        self.backend = backend
        self.config = config
        self.on_call = on_call
        self.stats = QueueStats()
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._sleep = sleep
        self._throttler = None
        if config.rps > 0:
            from asyncio_throttle import Throttler

            # Throttler counts starts per period; use a period of 1/rps for a smooth rate.
            self._throttler = Throttler(rate_limit=1, period=1.0 / config.rps)
        self._bucket = TokenBucket(config.tpm) if config.tpm > 0 else None

    async def _wait_for_rate(self, messages, options) -> None:
        if self._throttler is not None:
            async with self._throttler:
                pass
        if self._bucket is not None:
            await self._bucket.take(estimate_tokens(messages, options))

    def _enter(self) -> None:
        s = self.stats
        if s.in_flight == 0:
            s._busy_since = time.perf_counter()
        s.in_flight += 1

    def _leave(self) -> None:
        s = self.stats
        s.in_flight -= 1
        if s.in_flight == 0 and s._busy_since is not None:
            s.busy_seconds += time.perf_counter() - s._busy_since
            s._busy_since = None

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.config.backoff_max)
        ceiling = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # full jitter

    async def run(self, messages: list[dict], options: GenerateOptions, item: str, purpose: str) -> Completion:
        """Send one request, retrying transient errors; raise ``RequestFailed`` when it fails for good."""
        attempt = 0
        while True:
            attempt += 1
            await self._wait_for_rate(messages, options)
            error: Exception | None = None
            completion = None
            async with self._slots:
                self._enter()
                started = time.time()
                t0 = time.perf_counter()
                try:
                    completion = await self.backend.generate(messages, options)
                except (TransientError, PermanentError) as exc:
                    error = exc
                except BackendGone:  # nothing left to send requests to: stop the run, not just this item
                    raise
                except Exception as exc:  # noqa: BLE001 - an unexpected backend error fails this item
                    error = PermanentError(f"{type(exc).__name__}: {exc}")
                finally:
                    latency = time.perf_counter() - t0
                    self._leave()
            self.stats.calls += 1
            if completion is not None:
                self.stats.prompt_tokens += completion.prompt_tokens
                self.stats.completion_tokens += completion.completion_tokens
            if self.on_call is not None:
                self.on_call(
                    CallRecord(
                        item,
                        purpose,
                        messages,
                        options,
                        attempt,
                        started,
                        latency,
                        completion,
                        None if error is None else f"{type(error).__name__}: {error}",
                    )
                )
            if error is None:
                return completion
            if isinstance(error, PermanentError):
                self.stats.failures += 1
                raise RequestFailed(f"{error}", attempt)
            if attempt > self.config.max_retries:
                self.stats.failures += 1
                raise RequestFailed(f"gave up after {attempt} attempts; last error: {error}", attempt)
            self.stats.retries += 1
            await self._sleep(self.backoff(attempt, getattr(error, "retry_after", None)))
