"""Several OpenAI-compatible endpoints: load spreading, per-endpoint caps, failover, cool-down and probe,
every endpoint down, permanent errors, and `--base-url` given several times.

The endpoints are real HTTP servers on 127.0.0.1 (tests/openai_server.py) answering through the real
openai client; behind each server sits a fixed-answer backend (no model), so these tests test routing,
not answers. Faults are real HTTP 500 / 400 replies or a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections import Counter

import pytest

from autointerp.cli import build_parser, config_from_args, main
from autointerp.config import ExplainConfig, ScoreConfig
from autointerp.endpoints import EndpointSpec, parse_endpoints, redact
from autointerp.errors import AutointerpError
from autointerp.llm.base import Backend, Completion, GenerateOptions
from autointerp.llm.factory import make_backend
from autointerp.llm.multi_backend import MultiEndpointBackend
from autointerp.llm.openai_backend import OpenAIBackend
from autointerp.llm.queue import LLMQueue, QueueConfig, RequestFailed

from .conftest import query
from .openai_server import OK, FaultPlan, ModelServer

OPTIONS = GenerateOptions(max_tokens=8)
LOGGER = "autointerp.llm.multi_backend"


class Fixed(Backend):
    """The same answer to every prompt: these tests are about which endpoint answers, not what."""

    kind, model = "fixed", "fixed"

    async def generate(self, messages, options):
        return Completion("[EXPLANATION]: the word 'the'", 7, 3)


class Breakable(FaultPlan):
    """Answers ``ok_first`` requests, then ``fault`` to every request until ``healed`` is set."""

    def __init__(self, ok_first: int, fault: str = "500"):
        super().__init__()
        self.ok_first = ok_first
        self.fault = fault
        self.healed = False

    def next_fault(self, key: str) -> str:
        with self.lock:
            answered = sum(1 for a in self.arrivals if a[3] == OK)
            fault = self.fault if answered >= self.ok_first and not self.healed else OK
            self.arrivals.append((time.monotonic(), key, 0, fault))
            return fault

    def count(self, fault: str) -> int:
        with self.lock:
            return sum(1 for a in self.arrivals if a[3] == fault)


class Server(ModelServer):
    """The test server, counting the requests it is answering at once (measured on the server side)."""

    def __init__(self, plan: FaultPlan | None = None, delay: float = 0.0):
        super().__init__(Fixed(), plan, delay=delay)
        self.now = 0
        self.peak = 0
        self._count_lock = threading.Lock()

    def complete(self, request: dict) -> dict:
        with self._count_lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            return super().complete(request)
        finally:
            with self._count_lock:
                self.now -= 1


def messages(i: int, tag: str = "") -> list[dict]:
    return [{"role": "user", "content": f"request {tag}{i}"}]


async def send(queue: LLMQueue, n: int, tag: str = "") -> list:
    """``n`` distinct requests at once; each result is a Completion or the RequestFailed it ended in."""

    async def one(i):
        try:
            return await queue.run(messages(i, tag), OPTIONS, f"{tag}{i}", "test")
        except RequestFailed as exc:
            return exc

    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=60)


def multi(*urls, **kwargs) -> MultiEndpointBackend:
    return MultiEndpointBackend([OpenAIBackend("fixed", u, timeout=10) for u in urls], **kwargs)


async def wait_until_usable(backend: MultiEndpointBackend, index: int) -> None:
    """Until the endpoint's cool-down has ended and it is no longer passed over for a recent failure."""
    await asyncio.sleep(max(backend.status()[index]["out_for_s"], backend.base_cooldown) + 0.05)


def test_load_is_spread_over_two_endpoints():
    with Server(delay=0.05) as a, Server(delay=0.05) as b:
        backend = make_backend("openai", "fixed", f"{a.base_url},{b.base_url}")
        assert isinstance(backend, MultiEndpointBackend)

        async def go():
            try:
                return await send(LLMQueue(backend, QueueConfig(max_in_flight=8)), 40)
            finally:
                await backend.aclose()

        results = asyncio.run(go())
    assert all(isinstance(r, Completion) for r in results)
    assert a.served + b.served == 40
    assert min(a.served, b.served) >= 15  # least loaded first: close to half each
    # Always choosing the less loaded of two endpoints, 8 in flight never put more than 4 on one.
    assert 2 <= a.peak <= 4 and 2 <= b.peak <= 4
    # Each completion says which endpoint answered it, and that agrees with the servers' counts.
    assert Counter(r.endpoint for r in results) == {a.base_url: a.served, b.base_url: b.served}


def test_an_endpoint_cap_bounds_its_requests_in_flight():
    with Server(delay=0.05) as a, Server(delay=0.05) as b:
        backend = make_backend("openai", "fixed", f"{a.base_url}@1,{b.base_url}@6")

        async def go():
            try:
                return await send(LLMQueue(backend, QueueConfig(max_in_flight=12)), 40)
            finally:
                await backend.aclose()

        results = asyncio.run(go())
    assert all(isinstance(r, Completion) for r in results)
    assert a.peak == 1 and 2 <= b.peak <= 6  # 12 slots, but the caps allow only 7 in flight
    assert a.served >= 2 and a.served + b.served == 40


def test_failover_takes_a_failing_endpoint_out_and_probes_it_later(monkeypatch, caplog):
    secret = "sk-planted-endpoint-key-93xQ"
    monkeypatch.setenv("PLANTED_KEY", secret)
    caplog.set_level("DEBUG", logger=LOGGER)
    plan = Breakable(ok_first=5)
    calls = []
    with Server(plan, delay=0.02) as a, Server(delay=0.02) as b:
        backend = MultiEndpointBackend(
            [
                OpenAIBackend("fixed", a.base_url, "PLANTED_KEY", timeout=10),
                OpenAIBackend("fixed", b.base_url, "PLANTED_KEY", timeout=10),
            ],
            failures=2,
            cooldown=0.8,
            max_cooldown=3.2,
        )
        queue = LLMQueue(backend, QueueConfig(max_in_flight=4, max_retries=4, backoff_base=0.01), on_call=calls.append)
        seen = {}

        async def go():
            try:
                # 1. A breaks after 5 answers: the run completes on B.
                seen["first"] = await send(queue, 60, "first-")
                seen["failed_at_a"] = plan.count("500")
                # 2. Still broken: when its cool-down ends A gets one request (a probe, or the last
                # of its errors in a row), which fails; it is out, for a longer cool-down each time.
                await wait_until_usable(backend, 0)
                before = len(plan.arrivals)
                seen["second"] = await send(queue, 8, "second-")
                seen["probes_while_broken"] = len(plan.arrivals) - before
                seen["after_probe"] = backend.status()[0]
                # 3. Healed: the next probe is answered and A takes its share again.
                plan.healed = True
                await wait_until_usable(backend, 0)
                before = a.served
                seen["third"] = await send(queue, 40, "third-")
                seen["served_after_heal"] = a.served - before
                seen["healed"] = backend.status()[0]
            finally:
                await backend.aclose()

        asyncio.run(go())

    first = seen["first"]
    assert all(isinstance(r, Completion) for r in first)  # every request answered
    assert Counter(r.endpoint for r in first)[a.base_url] == 5
    failed_at_a = seen["failed_at_a"]
    # A gets few requests after failing: those in flight when it broke, then at most a probe or two.
    assert 1 <= failed_at_a <= 2 + 4 + 2
    assert b.served >= 55
    # The queue sent every retry; a retry goes to B unless it happens to meet A's probe.
    attempts = Counter(c.item for c in calls if c.item.startswith("first-"))
    assert sum(n - 1 for n in attempts.values()) == failed_at_a and max(attempts.values()) <= 3
    errors = [c.error for c in calls if c.error]
    assert errors and all(f"(endpoint {a.base_url})" in e and "500" in e for e in errors)

    assert all(isinstance(r, Completion) and r.endpoint == b.base_url for r in seen["second"])
    assert seen["probes_while_broken"] == 1  # one request only, not a share of the load
    assert seen["after_probe"]["taken_out"] and seen["after_probe"]["out_for_s"] > 0.4

    assert all(isinstance(r, Completion) for r in seen["third"])
    assert not seen["healed"]["taken_out"] and seen["healed"]["served"] >= 5 + seen["served_after_heal"]
    assert seen["served_after_heal"] >= 10  # back in service: a share of the load again
    log = caplog.text
    assert f"endpoint {a.base_url} out of service" in log and "back in service" in log
    assert f"answered by {b.base_url}" in log
    assert f"Bearer {secret}" in a.authorization  # the key was sent to the endpoints...
    assert secret not in log and not any(secret in (c.error or "") for c in calls)  # ...and logged nowhere


def test_an_endpoint_nobody_listens_on_is_skipped():
    dead = Server()
    dead_url = dead.base_url
    dead._httpd.server_close()  # the port is closed: connections are refused
    dead._loop.close()
    calls = []
    with Server() as b:
        backend = multi(dead_url, b.base_url, failures=2, cooldown=30)

        async def go():
            try:
                return await send(
                    LLMQueue(
                        backend, QueueConfig(max_in_flight=4, max_retries=3, backoff_base=0.01), on_call=calls.append
                    ),
                    20,
                )
            finally:
                await backend.aclose()

        results = asyncio.run(go())
        status = backend.status()
    assert all(isinstance(r, Completion) and r.endpoint == b.base_url for r in results)
    assert b.served == 20
    refused = [c.error for c in calls if c.error]
    assert 2 <= len(refused) <= 2 + 4 and all("connection error" in e and dead_url in e for e in refused)
    assert status[0]["taken_out"] and status[0]["out_for_s"] > 20


def test_every_endpoint_down_fails_with_the_reason_and_does_not_hang():
    plans = Breakable(ok_first=0), Breakable(ok_first=0)
    with Server(plans[0]) as a, Server(plans[1]) as b:
        backend = multi(a.base_url, b.base_url, failures=2, cooldown=0.2, max_cooldown=0.4)

        async def go():
            try:
                return await send(LLMQueue(backend, QueueConfig(max_in_flight=4, max_retries=3, backoff_base=0.01)), 6)
            finally:
                await backend.aclose()

        start = time.monotonic()
        results = asyncio.run(go())
        seconds = time.monotonic() - start
    assert all(isinstance(r, RequestFailed) for r in results)
    for r in results:
        assert r.attempts == 4 and "gave up after 4 attempts" in r.reason and "500" in r.reason
    # Once both are out, a retry fails at once with a Retry-After of the soonest cool-down end
    # (a fraction of a second here) instead of hammering the endpoints.
    assert any("every endpoint is out of service" in r.reason for r in results)
    assert plans[0].count("500") + plans[1].count("500") < 6 * 4
    assert seconds < 15


def test_a_permanent_error_is_not_retried_on_the_other_endpoint():
    plan = Breakable(ok_first=0, fault="400")
    with Server(plan) as a, Server() as b:
        backend = multi(a.base_url, b.base_url, failures=1, cooldown=30)

        async def go():
            try:
                return await send(LLMQueue(backend, QueueConfig(max_in_flight=2, max_retries=3)), 10)
            finally:
                await backend.aclose()

        results = asyncio.run(go())
        status = backend.status()
    failed = [r for r in results if isinstance(r, RequestFailed)]
    assert len(failed) == plan.count("400") >= 1  # the first request goes to A
    for r in failed:
        assert r.attempts == 1 and "HTTP 400" in r.reason and f"(endpoint {a.base_url})" in r.reason
    assert b.served == 10 - len(failed)
    failed_keys = {a_[1] for a_ in plan.arrivals}
    assert failed_keys and not failed_keys & {a_[1] for a_ in b.plan.arrivals}  # never sent to B
    assert not status[0]["taken_out"]  # a bad request is not the endpoint's fault


def test_base_url_given_twice_on_the_cli_names_both_endpoints():
    a, b = "http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"
    for command, cls in (("explain", ExplainConfig), ("score", ScoreConfig)):
        args = build_parser().parse_args(
            [
                command,
                "--db",
                "x.duckdb",
                "--backend",
                "openai",
                "--model",
                "m1",
                "--model",
                "m2",
                "--base-url",
                a,
                "--base-url",
                b + "@4",
            ]
        )
        assert args.base_url == f"{a},{b}@4" and args.model == "m2"  # other flags: the last one wins
        config = config_from_args(cls, args)
        backend = make_backend(config.backend, config.model, config.base_url)
        assert isinstance(backend, MultiEndpointBackend) and backend.model == "m2" and backend.kind == "openai"
        assert [(s["endpoint"], s["limit"]) for s in backend.status()] == [(a, None), (b, 4)]
        asyncio.run(backend.aclose())
    once = build_parser().parse_args(["explain", "--db", "x.duckdb", "--base-url", a])
    assert once.base_url == a
    single = make_backend("openai", "m", a)
    assert isinstance(single, OpenAIBackend) and single.base_url == a
    asyncio.run(single.aclose())
    capped = make_backend("openai", "m", a + "@4")  # one endpoint with a cap: the cap is enforced
    assert isinstance(capped, MultiEndpointBackend) and capped.status()[0]["limit"] == 4
    asyncio.run(capped.aclose())
    assert build_parser().parse_args(["explain", "--db", "x.duckdb"]).base_url == ""


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--base-url", "http://h1/v1@0"], "the cap is 0"),
        (["--base-url", "http://h1/v1@many"], "cannot read the cap"),
        (["--base-url", "http://h1/v1,,http://h2/v1"], "empty entry"),
        (["--base-url", "h1:8000/v1"], "not an http(s) URL"),
        (["--base-url", "http://h1/v1", "--base-url", "http://h1/v1"], "names http://h1/v1 twice"),
        (["--backend", "local", "--base-url", "http://h1/v1", "--base-url", "http://h2/v1"], "--backend openai"),
    ],
)
def test_bad_endpoints_are_refused_before_anything_runs(tmp_path, capsys, flags, message):
    db = tmp_path / "never.duckdb"
    backend = [] if "--backend" in flags else ["--backend", "openai"]
    assert main(["explain", "--db", str(db), "--model", "m", *backend, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Expected:" in err
    assert not db.exists()


def test_endpoint_specs_and_redaction():
    assert parse_endpoints("") == []
    assert parse_endpoints(" http://h1:8000/v1 , https://h2/v1@16") == [
        EndpointSpec("http://h1:8000/v1"),
        EndpointSpec("https://h2/v1", 16),
    ]
    # User info is part of the URL, not a cap; logs and messages never show it.
    spec = parse_endpoints("http://user:s3cret@h1:8000/v1?key=abc@3")[0]
    assert spec == EndpointSpec("http://user:s3cret@h1:8000/v1?key=abc", 3)
    assert redact(spec.url) == "http://h1:8000/v1"
    with pytest.raises(AutointerpError) as info:
        parse_endpoints("http://user:s3cret@h1:8000/v1@0")
    assert "s3cret" not in str(info.value)


@pytest.mark.slow
def test_explain_runs_over_two_endpoints_and_completes_when_one_fails(collected_db, tmp_path):
    db = tmp_path / "explain.duckdb"
    shutil.copy(collected_db, db)
    latents = [r[0] for r in query(db, "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 12")]
    plan = Breakable(ok_first=2)
    with Server(plan, delay=0.02) as a, Server(delay=0.02) as b:
        code = main(
            [
                "explain",
                "--db",
                str(db),
                "--quiet",
                "--backend",
                "openai",
                "--model",
                "fixed",
                "--base-url",
                a.base_url,
                "--base-url",
                b.base_url,
                "--latents",
                ",".join(map(str, latents)),
                "--n-examples",
                "3",
                "--max-in-flight",
                "4",
                "--backoff-base",
                "0.01",
            ]
        )
    assert code == 0
    got = query(db, "SELECT status, count(*) FROM explanations GROUP BY status")
    assert got == [("explained", len(latents))]
    assert a.served == 2 and b.served == len(latents) - 2 and plan.count("500") >= 1
    errors = query(db, "SELECT error FROM llm_calls WHERE error IS NOT NULL")
    assert len(errors) == plan.count("500") and all(a.base_url in e for (e,) in errors)
