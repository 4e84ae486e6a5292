"""Several endpoints behind one backend: requests spread by load, failing endpoints taken out for a while.

Each request goes to the usable endpoint with the fewest requests in flight relative to its cap (ties
in turn). An endpoint that answers ``failures`` transient errors in a row is taken out for a cool-down
(``cooldown`` seconds, doubling each time it fails again, up to ``max_cooldown``); when the cool-down
ends it gets one probe request: an answer puts it back in service, another error takes it out for
longer. After any error, until it answers again, an endpoint gets one request at a time, so a
failing endpoint never takes a share of the load. A Retry-After from an endpoint pauses that endpoint alone.

This backend never retries. A transient error is re-raised, naming the endpoint, for the queue to
retry, so retries are counted, logged and backed off in one place; and since an endpoint that just
failed is used only when no other is free, the retry goes to another endpoint. When every endpoint is
out, the attempt fails at once with a transient error whose Retry-After is the soonest end of a
cool-down (the queue sleeps until then); when those in service are all at their caps, it waits for a
free one. Permanent errors (a bad request) are not the endpoint's fault: they pass through, are not
retried elsewhere and do not count against the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from ..endpoints import redact
from .base import Backend, Completion, GenerateOptions, PermanentError, TransientError

logger = logging.getLogger(__name__)


class _Endpoint:
    """One endpoint's load and health."""

    def __init__(self, backend: Backend, label: str, limit: int | None, cooldown: float):
        self.backend = backend
        self.label = label
        self.limit = limit
        self.in_flight = 0
        self.failures = 0  # transient errors in a row
        self.last_failure = -math.inf  # monotonic time of the last one
        self.last_error = ""
        self.out_until = 0.0  # monotonic time before which it gets no request
        self.taken_out = False  # out after too many failures: back only through a successful probe
        self.cooldown = cooldown  # length of the next cool-down
        self.served = 0
        self.failed = 0

    def cap(self) -> float:
        if self.taken_out or self.failures:
            return 1  # the probe; or, after an error, one request at a time until it answers again
        return self.limit if self.limit is not None else math.inf


class MultiEndpointBackend(Backend):
    """``MultiEndpointBackend([OpenAIBackend(m, url1), OpenAIBackend(m, url2)], limits=[16, None])``"""

    def __init__(
        self,
        endpoints: list[Backend],
        limits: list[int | None] | None = None,
        failures: int = 3,
        cooldown: float = 5.0,
        max_cooldown: float = 300.0,
        labels: list[str] | None = None,
    ):
        if not endpoints:
            raise ValueError("MultiEndpointBackend needs at least one endpoint")
        if len({(b.kind, b.model) for b in endpoints}) != 1:
            raise ValueError("every endpoint must be the same kind of backend serving the same model")
        limits = limits or [None] * len(endpoints)
        labels = labels or [_label(b, i) for i, b in enumerate(endpoints)]
        if not len(limits) == len(labels) == len(endpoints):
            raise ValueError("one limit and one label per endpoint")
        if failures < 1 or cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError("failures >= 1 and 0 < cooldown <= max_cooldown")
        self.kind = endpoints[0].kind
        self.model = endpoints[0].model
        self.failures = failures
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._endpoints = [
            _Endpoint(b, lab, lim, cooldown) for b, lab, lim in zip(endpoints, labels, limits, strict=True)
        ]
        # An uncapped endpoint counts as large as the largest cap given (all equal when none is).
        self._default_weight = max([lim for lim in limits if lim is not None], default=1)
        self._turn = 0  # round robin among equally loaded endpoints
        self._changed: asyncio.Event | None = None  # set when a request ends: waiters for a free slot wake
        self._changed_loop = None

    async def generate(self, messages: list[dict], options: GenerateOptions) -> Completion:
        endpoint, probe = await self._acquire()
        sent = time.monotonic()
        try:
            completion = await endpoint.backend.generate(messages, options)
        except TransientError as exc:
            self._failed(endpoint, probe, exc)
            raise TransientError(f"{exc} (endpoint {endpoint.label})", self._retry_after()) from exc
        except PermanentError as exc:
            raise PermanentError(f"{exc} (endpoint {endpoint.label})") from exc
        finally:
            endpoint.in_flight -= 1
            self._notify()
        self._answered(endpoint, probe, sent)
        if completion.endpoint is None:
            completion.endpoint = endpoint.label
        logger.debug("answered by %s", endpoint.label)
        return completion

    def status(self) -> list[dict]:
        """Per endpoint: label, cap, requests in flight, served and failed, and whether it is out."""
        now = time.monotonic()
        return [
            dict(
                endpoint=e.label,
                limit=e.limit,
                in_flight=e.in_flight,
                served=e.served,
                failed=e.failed,
                taken_out=e.taken_out,
                out_for_s=max(0.0, e.out_until - now),
                last_error=e.last_error,
            )
            for e in self._endpoints
        ]

    async def aclose(self) -> None:
        for e in self._endpoints:
            logger.info(
                "endpoint %s: %d answered, %d transient errors%s",
                e.label,
                e.served,
                e.failed,
                "; out of service" if e.taken_out else "",
            )
        await asyncio.gather(*(e.backend.aclose() for e in self._endpoints))

    # -- choosing an endpoint --

    def _pick(self, now: float) -> _Endpoint | None:
        n = len(self._endpoints)
        usable = [(i, e) for i, e in enumerate(self._endpoints) if now >= e.out_until and e.in_flight < e.cap()]
        if not usable:
            return None

        def key(item):
            i, e = item
            # An endpoint that failed within a cool-down's length is used only when no other is free,
            # so that the queue's retry of its request lands elsewhere.
            recently_failed = e.failures > 0 and now - e.last_failure < self.base_cooldown
            return recently_failed, e.in_flight / (e.limit or self._default_weight), (i - self._turn) % n

        i, endpoint = min(usable, key=key)
        self._turn = (i + 1) % n
        return endpoint

    async def _acquire(self) -> tuple[_Endpoint, bool]:
        while True:
            now = time.monotonic()
            endpoint = self._pick(now)
            if endpoint is not None:
                endpoint.in_flight += 1
                return endpoint, endpoint.taken_out
            back = [e.out_until - now for e in self._endpoints if e.out_until > now]
            if len(back) == len(self._endpoints):
                raise TransientError(self._all_out_message(now), min(back))
            # Every endpoint in service is at its cap: wait for a request to end or a cool-down to.
            changed = self._event()
            try:
                await asyncio.wait_for(changed.wait(), min(back) if back else None)
            except asyncio.TimeoutError:
                pass

    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._changed is None or self._changed_loop is not loop:
            self._changed, self._changed_loop = asyncio.Event(), loop
        return self._changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None  # the next waiter waits for the next change

    # -- health --

    def _answered(self, e: _Endpoint, probe: bool, sent: float) -> None:
        e.served += 1
        if probe:
            logger.warning("endpoint %s answered its probe: back in service", e.label)
        # Only an answer to a request sent after the last error says the endpoint is well now.
        if probe or (not e.taken_out and sent > e.last_failure):
            e.failures, e.taken_out, e.cooldown = 0, False, self.base_cooldown

    def _failed(self, e: _Endpoint, probe: bool, exc: TransientError) -> None:
        now = time.monotonic()
        e.failed += 1
        e.failures += 1
        e.last_failure = now
        e.last_error = str(exc)
        if exc.retry_after is not None:
            e.out_until = max(e.out_until, now + exc.retry_after)
        if probe or (not e.taken_out and e.failures >= self.failures):
            e.taken_out = True
            e.out_until = max(e.out_until, now + e.cooldown)
            logger.warning(
                "endpoint %s out of service for %.1f s after %d errors in a row (last: %s)",
                e.label,
                e.out_until - now,
                e.failures,
                exc,
            )
            e.cooldown = min(2 * e.cooldown, self.max_cooldown)

    def _retry_after(self) -> float | None:
        """None when some endpoint can take a retry now, else the wait until the first one can."""
        now = time.monotonic()
        back = [e.out_until - now for e in self._endpoints]
        return None if min(back) <= 0 else min(back)

    def _all_out_message(self, now: float) -> str:
        parts = [
            f"{e.label} (back in {e.out_until - now:.1f} s; last error: {e.last_error or 'none'})"
            for e in self._endpoints
        ]
        return "every endpoint is out of service: " + ", ".join(parts)


def _label(backend: Backend, index: int) -> str:
    url = getattr(backend, "base_url", None)
    return redact(url) if url else f"{backend.kind}:{backend.model}#{index}"
