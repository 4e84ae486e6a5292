"""The request queue's own plumbing: concurrency bound, rate limits, backoff. The backend here is a
scripted stand-in at the network edge (it answers at once, or fails as told); the real backends are
tested in test_explain_openai.py and test_llm_local.py."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise

import pytest

from autointerp.llm.base import Backend, Completion, GenerateOptions, PermanentError, TransientError
from autointerp.llm.queue import LLMQueue, QueueConfig, RequestFailed

MESSAGES = [{"role": "user", "content": "x" * 400}]  # ~100 tokens by the queue's estimate


class Scripted(Backend):
    kind, model = "scripted", "scripted"

    def __init__(self, failures: dict[str, list[Exception]] | None = None, latency: float = 0.0):
        self.failures = failures or {}
        self.latency = latency
        self.in_flight = 0
        self.peak = 0
        self.starts: list[float] = []

    async def generate(self, messages, options):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.starts.append(time.monotonic())
        try:
            await asyncio.sleep(self.latency)
            key = messages[-1].get("key", "")
            if self.failures.get(key):
                raise self.failures[key].pop(0)
            return Completion("ok", 100, 1)
        finally:
            self.in_flight -= 1


def run_many(queue: LLMQueue, n: int, options: GenerateOptions | None = None):
    options = options or GenerateOptions(max_tokens=20)

    async def go():
        return await asyncio.gather(*[queue.run(MESSAGES, options, f"item {i}", "test") for i in range(n)])

    return asyncio.run(go())


def test_in_flight_never_exceeds_the_bound():
    backend = Scripted(latency=0.02)
    run_many(LLMQueue(backend, QueueConfig(max_in_flight=3)), 20)
    assert backend.peak == 3


def test_requests_per_second_limit():
    backend = Scripted()
    start = time.monotonic()
    run_many(LLMQueue(backend, QueueConfig(max_in_flight=50, rps=20)), 21)
    assert time.monotonic() - start >= 0.95  # 21 starts at 20/s need at least 1 s
    gaps = [b - a for a, b in pairwise(backend.starts)]
    assert min(gaps) >= 0.04


def test_tokens_per_minute_limit():
    backend = Scripted()
    # Each request is estimated at 100 + 20 = 120 tokens. The bucket starts full (12000 tokens) and
    # refills at 200 tokens/s, so 101 requests (12120 tokens) need at least 120 / 200 = 0.6 s.
    start = time.monotonic()
    run_many(LLMQueue(backend, QueueConfig(max_in_flight=200, tpm=12000)), 101)
    assert time.monotonic() - start >= 0.55
    start = time.monotonic()
    run_many(LLMQueue(backend, QueueConfig(max_in_flight=200, tpm=12000)), 100)  # within the budget
    assert time.monotonic() - start < 0.5


def test_retry_after_and_backoff_are_slept_outside_the_slot():
    slept: list[float] = []

    async def fake_sleep(seconds):
        slept.append(seconds)

    messages = [{"role": "user", "content": "a", "key": "a"}]
    backend = Scripted({"a": [TransientError("429", retry_after=7.0), TransientError("500"), TransientError("500")]})
    queue = LLMQueue(backend, QueueConfig(max_retries=5, backoff_base=2.0), sleep=fake_sleep)
    result = asyncio.run(queue.run(messages, GenerateOptions(), "a", "test"))
    assert result.text == "ok" and queue.stats.retries == 3
    assert slept[0] == 7.0  # Retry-After wins
    assert 0 <= slept[1] <= 4.0 and 0 <= slept[2] <= 8.0  # full jitter under base * 2**(attempt-1)


def test_retries_stop_at_the_limit_and_permanent_errors_are_not_retried():
    messages = [{"role": "user", "content": "b", "key": "b"}]
    calls = []
    backend = Scripted({"b": [TransientError("500")] * 10})
    queue = LLMQueue(backend, QueueConfig(max_retries=2, backoff_base=0.0), on_call=calls.append)
    with pytest.raises(RequestFailed, match="gave up after 3 attempts") as info:
        asyncio.run(queue.run(messages, GenerateOptions(), "b", "test"))
    assert info.value.attempts == 3 and [c.attempt for c in calls] == [1, 2, 3]
    assert all(c.error.startswith("TransientError") for c in calls)
    backend = Scripted({"b": [PermanentError("HTTP 400: too long")]})
    queue = LLMQueue(backend, QueueConfig(max_retries=5), on_call=calls.append)
    with pytest.raises(RequestFailed, match="HTTP 400") as info:
        asyncio.run(queue.run(messages, GenerateOptions(), "b", "test"))
    assert info.value.attempts == 1
