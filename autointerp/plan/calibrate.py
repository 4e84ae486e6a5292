"""``--calibrate``: measure the chosen backend's prefill and decode rates on real prompt shapes and
turn the plan's token counts into an expected wall time with an interval.

Each of N planned requests (spread over the purposes) is sent twice through the normal backend, one
at a time: first with a nonce in front of its first message and ``max_tokens=1`` (nothing of it is in a
prefix cache: its time is the prefill of its prompt tokens), then as the run would send it (its decode
time is its time less the prefill time its prompt would take at that rate). Each request gives one
(prefill rate, decode rate) pair; the expected wall time is the median of the times the pairs give
alone, the interval their minimum and maximum. The rates are those of one request at a time: an engine
that batches concurrent requests (vLLM) runs a whole run faster, so for it the figure is an upper bound.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, replace

from ..config import LLMConfig
from ..llm.factory import make_backend
from .count import Counts
from .requests import PlannedCall


@dataclass
class Measurement:
    purpose: str
    prompt_tokens: int
    completion_tokens: int
    prefill_s: float
    full_s: float
    prefill_rate: float
    """Prompt tokens per second."""
    decode_rate: float | None
    """Completion tokens per second; None when the answer was one token or shorter."""


@dataclass
class Estimate:
    """Expected wall time of the planned run from the measured rates."""

    measurements: list[Measurement]
    prefill_tokens: int
    """Prompt tokens the run must prefill: all of them without a prefix cache (local), the uncached
    ones with one."""
    completion_tokens: float
    """Expected completion tokens: per purpose, the planned calls times the mean completion measured."""
    seconds: float
    low_s: float
    high_s: float

    def to_dict(self) -> dict:
        return {**asdict(self), "measurements": [asdict(m) for m in self.measurements]}


def pick(calls: list[PlannedCall], n: int) -> list[PlannedCall]:
    """``n`` requests taken in turn from each purpose (the first ones of each)."""
    by_purpose: dict[str, list[PlannedCall]] = {}
    for call in calls:
        by_purpose.setdefault(call.purpose, []).append(call)
    chosen: list[PlannedCall] = []
    k = 0
    while len(chosen) < n and any(k < len(v) for v in by_purpose.values()):
        chosen += [v[k] for v in by_purpose.values() if k < len(v)][: n - len(chosen)]
        k += 1
    return chosen


async def measure(config: LLMConfig, calls: list[PlannedCall]) -> list[Measurement]:
    """Send each of ``calls`` twice (see the module docstring) through the backend ``config`` names."""
    backend = make_backend(config.backend, config.model, config.base_url, config.api_key_env, config.timeout)
    out = []
    try:
        for call in calls:
            nonce = [dict(call.messages[0], content=f"[{uuid.uuid4().hex}]\n" + call.messages[0]["content"])]
            probe = replace(call.options, max_tokens=1, regex="", logprobs=False, top_logprobs=0)
            t = time.perf_counter()
            first = await backend.generate(nonce + call.messages[1:], probe)
            prefill_s = time.perf_counter() - t
            t = time.perf_counter()
            full = await backend.generate(call.messages, call.options)
            full_s = time.perf_counter() - t
            prefill_rate = first.prompt_tokens / prefill_s if prefill_s > 0 else float("inf")
            decode_s = full_s - full.prompt_tokens / prefill_rate
            decode_rate = full.completion_tokens / decode_s if full.completion_tokens > 1 and decode_s > 0 else None
            out.append(
                Measurement(
                    call.purpose,
                    full.prompt_tokens,
                    full.completion_tokens,
                    prefill_s,
                    full_s,
                    prefill_rate,
                    decode_rate,
                )
            )
    finally:
        await backend.aclose()
    return out


def estimate(counts: Counts, measurements: list[Measurement], prefix_cache: bool) -> Estimate:
    """The wall time of the run ``counts`` describes, from each measurement's rates (module docstring)."""
    prefill_tokens = counts.total.uncached_tokens if prefix_cache else counts.total.prompt_tokens
    completion = 0.0
    for purpose, tally in counts.by_purpose.items():
        measured = [m.completion_tokens for m in measurements if m.purpose == purpose]
        per_call = statistics.mean(measured) if measured else tally.completion_budget / max(tally.calls, 1)
        completion += tally.calls * per_call
    decode_rates = [m.decode_rate for m in measurements if m.decode_rate]
    times = []
    for m in measurements:
        decode = m.decode_rate or (statistics.median(decode_rates) if decode_rates else None)
        times.append(prefill_tokens / m.prefill_rate + (completion / decode if decode else 0.0))
    return Estimate(measurements, prefill_tokens, completion, statistics.median(times), min(times), max(times))


def calibrate(config: LLMConfig, counts: Counts, n: int) -> Estimate:
    """Measure on ``n`` of the planned requests (``counts.samples``) and estimate the run's wall time."""
    calls = [call for kept in counts.samples.values() for call in kept]
    measurements = asyncio.run(measure(config, pick(calls, n)))
    return estimate(counts, measurements, prefix_cache=config.backend != "local")
