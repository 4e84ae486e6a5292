"""Ray workers that serve the LLM calls of explain and score (``--executor ray``).

The driver (the process running ``autointerp explain`` or ``score``) keeps doing everything but
generating: it reads examples, builds prompts, parses answers, computes metrics and is the single writer
of the DuckDB file, with the stages' usual latent-level resume (finished latents are skipped; a
successful logged call is reused by its request hash). Only the backend changes: ``RayWorkerPool`` is a
``Backend`` whose ``generate`` hands each request to one of N Ray actors (``LLMWorker``), each of which
builds its own backend with ``make_backend``:

- ``--backend openai`` with several endpoints: the endpoints are dealt to the workers in turn (worker i
  gets endpoints i, i+N, ...). With more workers than endpoints, workers share an endpoint and split its
  ``@N`` cap between them. A worker with several endpoints spreads its requests over them as a local
  run does (``MultiEndpointBackend``).
- ``--backend local`` or ``vllm``: every worker loads its own in-process model; on a GPU cluster each
  reserves ``--worker-gpus`` GPUs, so there is one model per GPU.

Latents are grouped in shards of consecutive latents. A shard is owned by one live worker, chosen (the
least loaded) when its first request arrives, so all requests of a latent go to the same worker and
share its prefix cache. The latent of a request comes from ``llm.routing.current_latent``, set by the
stages for each per-latent job. Shards are small enough that the latents in flight (about
``--max-in-flight`` of them in explain) span several shards per worker, so every worker has work.

A worker that dies (its process killed, its node lost) loses only the requests it had in flight: they
fail with a transient error naming the worker, which the queue logs and retries like any other, and its
shards move to the live workers (actors are never restarted: a half-loaded model is worse than a
smaller pool). When every worker has died the run stops with ``BackendGone``; it is marked failed and a
rerun resumes it.

The intervention scorer keeps steering the subject model in the driver; only its judge's calls go
through the pool.

The API key is never sent to the workers (not as an argument, not in a runtime_env, which Ray stores
and shows): each worker reads the variable named by ``--api-key-env`` from its own environment. A
private Ray instance started by this process passes the driver's environment on; on a real cluster
export the variable on every node before ``ray start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator

from ..config import ExecutorConfig, LLMConfig
from ..endpoints import EndpointSpec, parse_endpoints, redact
from ..errors import AutointerpError
from ..llm.base import Backend, BackendGone, Completion, GenerateOptions, PermanentError, TransientError
from ..llm.routing import current_latent
from .cluster import Cluster, import_ray, ray_cluster

log = logging.getLogger(__name__)

SHARD_LATENTS = 64
"""Most latents in a shard; ``shard_latents`` makes shards smaller when few latents are in flight."""
START_REPORT_S = 30.0  # while workers start (a model loads, or the cluster has no room yet), log every so often


def shard_latents(max_in_flight: int, workers: int) -> int:
    """Latents per shard: at most SHARD_LATENTS, and small enough that the about ``max_in_flight``
    consecutive latents in flight span four shards per worker."""
    return max(1, min(SHARD_LATENTS, max_in_flight // (4 * max(workers, 1))))


def deal_endpoints(base_url: str, workers: int) -> list[str]:
    """Each worker's ``--base-url``: the endpoints dealt in turn; an endpoint shared by several workers
    (more workers than endpoints) has its cap split between them."""
    specs = parse_endpoints(base_url)
    if not specs:
        return [""] * workers  # the API's default URL for everyone
    if workers <= len(specs):
        return [_join(specs[i::workers]) for i in range(workers)]
    shares = []
    for i in range(workers):
        spec = specs[i % len(specs)]
        sharing = len(range(i % len(specs), workers, len(specs)))  # workers that use this endpoint
        nth = i // len(specs)
        if spec.limit is not None:
            if spec.limit < sharing:
                raise AutointerpError(
                    f"--base-url {redact(spec.url)}@{spec.limit} would be shared by {sharing} Ray workers, "
                    f"fewer requests in flight than workers.",
                    "a cap of at least one request per worker that shares the endpoint.",
                    f"raise the cap to @{sharing} or more, give more endpoints, or pass fewer --workers.",
                )
            spec = EndpointSpec(spec.url, spec.limit // sharing + (1 if nth < spec.limit % sharing else 0))
        shares.append(_join([spec]))
    return shares


def _join(specs: list[EndpointSpec], redacted: bool = False) -> str:
    """Endpoints as one --base-url value (URL@N for capped ones), without user info if ``redacted``."""
    return ",".join(
        (redact(s.url) if redacted else s.url) + (f"@{s.limit}" if s.limit is not None else "") for s in specs
    )


class LLMWorker:
    """One Ray actor: builds its own backend and answers ``generate`` calls concurrently (an async actor).

    Errors come back as values, not exceptions, so that a transient error's Retry-After survives the
    trip; a worker whose backend could not be built reports why from ``ready``."""

    def __init__(
        self, index: int, kind: str, model: str, base_url: str, api_key_env: str, timeout: float, expect_key: bool
    ):
        from ..llm.factory import make_backend

        self.index = index
        self.base_url = base_url
        self.backend: Backend | None = None
        self.error: dict | None = None
        try:
            if expect_key and not os.environ.get(api_key_env):
                raise AutointerpError(
                    f"The environment variable {api_key_env} is not set on Ray worker {index} "
                    f"({socket.gethostname()}), though it is set where the run was started.",
                    f"{api_key_env} set on every node of the cluster (the key is never sent to the workers).",
                    f"export {api_key_env}=... on each node before `ray start`, then rerun.",
                )
            self.backend = make_backend(kind, model, base_url, api_key_env, timeout)
        except Exception as exc:  # noqa: BLE001 - reported to the driver by ready()
            self.error = {
                "what": str(getattr(exc, "what", exc)),
                "expected": getattr(exc, "expected", None),
                "fix": getattr(exc, "fix", None),
                "type": type(exc).__name__,
            }
        specs = parse_endpoints(base_url) if kind == "openai" else []
        self.label = redact(specs[0].url) if len(specs) == 1 else None

    async def ready(self) -> dict:
        info = {"index": self.index, "pid": os.getpid(), "host": socket.gethostname(), "error": self.error}
        if self.backend is not None:
            info.update(
                kind=self.backend.kind,
                model=self.backend.model,
                count_tokens=callable(getattr(self.backend, "count_tokens", None)),
            )
        return info

    def pid(self) -> int:
        return os.getpid()

    async def generate(self, messages: list[dict], options: GenerateOptions) -> tuple:
        try:
            completion = await self.backend.generate(messages, options)
        except TransientError as exc:
            return ("transient", str(exc), exc.retry_after)
        except PermanentError as exc:
            return ("permanent", str(exc))
        if completion.endpoint is None:
            completion.endpoint = self.label
        return ("ok", completion)

    def count_tokens(self, messages: list[dict], generation_prompt: bool = True) -> int:
        return self.backend.count_tokens(messages, generation_prompt)

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()


class RayWorkerPool(Backend):
    """Sends each request to the Ray worker that owns its latent's shard; see the module docstring.

    ``kind`` and ``model`` are the workers' backend's, so request hashes, the call log and the resume
    cache are the same as a local run's."""

    def __init__(self, ray, actors: list, infos: list[dict], shard_size: int, shares: list[str]):
        self._ray = ray
        self._actors = actors
        self.kind = infos[0]["kind"]
        self.model = infos[0]["model"]
        self.shard_size = shard_size
        self.shares = shares
        self.infos = infos
        n = len(actors)
        self._alive = [True] * n
        self._in_flight = [0] * n
        self._shards = [0] * n  # shards owned
        self._served = [0] * n
        self._owner: dict[int, int] = {}  # shard -> worker
        self.deaths: dict[int, str] = {}  # worker -> why it died
        if all(info.get("count_tokens") for info in infos):
            self.count_tokens = self._count_tokens  # the score stage reads it with getattr

    @classmethod
    async def start(cls, cluster: Cluster, config: LLMConfig) -> RayWorkerPool:
        ray = import_ray()
        shares = (
            deal_endpoints(config.base_url, cluster.workers)
            if config.backend == "openai"
            else [config.base_url] * cluster.workers
        )
        expect_key = config.backend == "openai" and bool(os.environ.get(config.api_key_env))
        actor_class = ray.remote(LLMWorker)
        tag = uuid.uuid4().hex[:8]
        actors = [
            actor_class.options(
                name=f"autointerp-llm-{tag}-{i}",
                num_cpus=cluster.cpus_per_worker,
                num_gpus=cluster.gpus_per_worker,
                max_restarts=0,
                max_task_retries=0,
            ).remote(i, config.backend, config.model, share, config.api_key_env, config.timeout, expect_key)
            for i, share in enumerate(shares)
        ]
        try:
            infos = await _wait_ready(ray, actors)
        except BaseException:
            for actor in actors:
                ray.kill(actor)
            raise
        pool = cls(
            ray,
            actors,
            [i for i in infos if isinstance(i, dict)] or [{}],
            shard_latents(config.max_in_flight, len(actors)),
            shares,
        )
        for i, info in enumerate(infos):
            if isinstance(info, dict):
                log.info(
                    "Ray worker %d: pid %s on %s, %s %s%s",
                    i,
                    info["pid"],
                    info["host"],
                    info["kind"],
                    info["model"],
                    f" at {_redacted(shares[i])}" if shares[i] else "",
                )
            else:
                pool._lost(i, info)
        return pool

    @property
    def executor_info(self) -> dict:
        """What a run stores about its executor (runs.config, under "resolved")."""
        info = {"executor": "ray", "workers": len(self._actors), "shard_latents": self.shard_size}
        if self.kind == "openai":
            info["worker_endpoints"] = [_redacted(s) for s in self.shares]
        return info

    def status(self) -> list[dict]:
        """Per worker: alive, why it died, requests in flight, answers served and shards owned."""
        return [
            dict(
                worker=i,
                alive=self._alive[i],
                died=self.deaths.get(i),
                in_flight=self._in_flight[i],
                served=self._served[i],
                shards=self._shards[i],
            )
            for i in range(len(self._actors))
        ]

    async def generate(self, messages: list[dict], options: GenerateOptions) -> Completion:
        ray = self._ray
        i = self._route()
        self._in_flight[i] += 1
        try:
            reply = await self._actors[i].generate.remote(messages, options)
        except ray.exceptions.RayActorError as exc:
            raise self._lost(i, exc) from None
        except ray.exceptions.RayTaskError as exc:  # an unexpected error inside the worker
            cause = getattr(exc, "cause", None) or exc
            raise PermanentError(f"Ray worker {i}: {type(cause).__name__}: {cause}") from None
        finally:
            self._in_flight[i] -= 1
        if reply[0] == "transient":
            raise TransientError(f"{reply[1]} (ray-worker-{i})", reply[2])
        if reply[0] == "permanent":
            raise PermanentError(f"{reply[1]} (ray-worker-{i})")
        completion = reply[1]
        self._served[i] += 1
        completion.endpoint = f"ray-worker-{i}" + (f" {completion.endpoint}" if completion.endpoint else "")
        return completion

    def _route(self) -> int:
        alive = [i for i, ok in enumerate(self._alive) if ok]
        if not alive:
            raise self._gone()
        latent = current_latent.get()
        if latent is None:
            return min(alive, key=lambda i: (self._in_flight[i], i))
        shard = latent // self.shard_size
        owner = self._owner.get(shard)
        if owner is None or not self._alive[owner]:
            owner = min(alive, key=lambda i: (self._in_flight[i], self._shards[i], i))
            self._owner[shard] = owner
            self._shards[owner] += 1
        return owner

    def _lost(self, i: int, exc: BaseException | str) -> Exception:
        """Mark worker ``i`` dead (once) and say what to raise: a transient error while others live."""
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if self._alive[i]:
            self._alive[i] = False
            self.deaths[i] = reason
            moved = self._shards[i]
            self._shards[i] = 0
            self._owner = {s: w for s, w in self._owner.items() if w != i}  # reassigned at their next request
            log.warning(
                "Ray worker %d died (%s); its %d shards move to the %d live workers", i, reason, moved, sum(self._alive)
            )
            with contextlib.suppress(Exception):
                self._ray.kill(self._actors[i])
        if not any(self._alive):
            return self._gone()
        return TransientError(f"Ray worker {i} died: {reason}")

    def _gone(self) -> BackendGone:
        why = "; ".join(f"worker {i}: {r}" for i, r in sorted(self.deaths.items()))
        return BackendGone(
            f"Every Ray worker of the run has died ({why}).",
            "at least one live worker to send the LLM requests to.",
            "check the workers' nodes (memory, GPUs) and rerun the same command: finished latents "
            "are kept and skipped.",
        )

    def _count_tokens(self, messages: list[dict], generation_prompt: bool = True) -> int:
        i = min((i for i, ok in enumerate(self._alive) if ok), default=None)
        if i is None:
            raise self._gone()
        return self._ray.get(self._actors[i].count_tokens.remote(messages, generation_prompt), timeout=60)

    async def aclose(self) -> None:
        ray = self._ray
        live = [a for a, ok in zip(self._actors, self._alive, strict=True) if ok]
        if live:  # let the backends close their connections or engines, but do not wait on a stuck one
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*(a.close.remote() for a in live), return_exceptions=True), 30)
        for i, actor in enumerate(self._actors):
            with contextlib.suppress(Exception):
                ray.kill(actor)
            log.info(
                "Ray worker %d: %d answered%s",
                i,
                self._served[i],
                f"; died: {self.deaths[i]}" if i in self.deaths else "",
            )


async def _wait_ready(ray, actors: list) -> list:
    """Each worker's ``ready`` info, or the RayActorError of one that died while starting; raise the
    error of a worker that could not build its backend (a configuration error is every worker's)."""
    pending = {asyncio.ensure_future(_ready(a)): i for i, a in enumerate(actors)}
    infos: list = [None] * len(actors)
    while pending:
        done, _ = await asyncio.wait(pending, timeout=START_REPORT_S)
        for task in done:
            infos[pending.pop(task)] = task.result()
        if pending and not done:
            log.info("waiting for Ray workers to start: %d of %d ready", len(actors) - len(pending), len(actors))
    for i, info in enumerate(infos):
        if isinstance(info, dict) and info["error"]:
            e = info["error"]
            what = f"Ray worker {i} on {info['host']} could not build its backend: {e['what']}"
            raise AutointerpError(
                what if e["type"] == "AutointerpError" else f"{what} ({e['type']})", e["expected"], e["fix"]
            )
    if not any(isinstance(info, dict) for info in infos):
        raise AutointerpError(
            f"No Ray worker started: {str(infos[0]).splitlines()[0]}",
            "workers that can start on the cluster's nodes.",
            "check the nodes' logs (`ray logs`), memory and GPUs.",
        )
    return infos


async def _ready(actor):
    import ray

    try:
        return await actor.ready.remote()
    except ray.exceptions.RayActorError as exc:
        return exc


def _redacted(share: str) -> str:
    return _join(parse_endpoints(share), redacted=True)


@contextlib.asynccontextmanager
async def ray_pool(config: LLMConfig, executor: ExecutorConfig) -> AsyncIterator[RayWorkerPool]:
    """The run's worker pool on the Ray cluster of ``executor``; the workers are stopped at the end."""
    with ray_cluster(executor) as cluster:
        pool = await RayWorkerPool.start(cluster, config)
        try:
            yield pool
        finally:
            await pool.aclose()
