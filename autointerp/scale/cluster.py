"""Join or start the Ray cluster a run uses, and size its workers.

autointerp does not run its own cluster layer: with ``--executor ray`` every stage uses Ray (the engine
vLLM itself uses for multi-node serving). A process that already called ``ray.init`` (a notebook, a
test) keeps its connection; otherwise the run connects to ``--ray-address`` or starts a private
instance on this machine and shuts it down at the end.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from ..config import ExecutorConfig
from ..errors import AutointerpError

log = logging.getLogger(__name__)


def import_ray():
    try:
        import ray
    except ImportError:
        raise AutointerpError(
            "--executor ray needs the ray package, which is not installed.",
            "ray importable in this environment (and on every node of the cluster).",
            "pip install 'autointerp[ray]' (or pip install ray), or use --executor local.",
        ) from None
    return ray


@dataclass
class Cluster:
    """The Ray cluster of one run: how many workers and what each reserves."""

    workers: int
    gpus_per_worker: float  # 0 on a cluster without GPUs
    cpus_per_worker: float
    address: str  # what was joined ("" for a private local instance)


@contextlib.contextmanager
def ray_cluster(executor: ExecutorConfig) -> Iterator[Cluster]:
    """Connect for the duration of a run; yields the cluster's sizing."""
    ray = import_ray()
    started_here = False
    if not ray.is_initialized():
        check_address(executor.ray_address)
        try:
            if executor.ray_address:
                ray.init(address=executor.ray_address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # ConnectionError, RuntimeError, ...: all mean "no cluster there"
            raise AutointerpError(
                f"Could not connect to Ray at {executor.ray_address or 'a new local instance'}: "
                f"{type(exc).__name__}: {exc}",
                "a running Ray cluster: `ray start --head` on the head node, then --ray-address HOST:6379 "
                "(or auto on a cluster node).",
                "check the address and that the cluster is up.",
            ) from exc
        started_here = True
    try:
        yield size_workers(executor, ray.cluster_resources())
    finally:
        if started_here:
            ray.shutdown()


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail at once on a HOST:PORT that nobody listens on: ``ray.init`` retries such an address for
    minutes before giving up."""
    if not address or address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = host_port.rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        return  # not HOST:PORT: Ray reads it
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise AutointerpError(
            f"Nothing answers at --ray-address {address}: {exc}.",
            "the address of a running Ray cluster's head node: HOST:6379 (the GCS port `ray start --head` "
            "prints), ray://HOST:10001 for Ray Client, or auto on a cluster node.",
            "start the cluster (`ray start --head`) or correct the address; leave --ray-address empty to "
            "start a private Ray instance on this machine.",
        ) from None


def size_workers(executor: ExecutorConfig, resources: dict) -> Cluster:
    """Workers and their reservations from the cluster's resources (see ExecutorConfig.workers)."""
    gpus = float(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 1))
    if gpus >= 1 and executor.worker_gpus > 0:
        fit = int(math.floor(gpus / executor.worker_gpus + 1e-9))
        workers = executor.workers or fit
        if workers > fit:
            raise AutointerpError(
                f"--workers {workers} x --worker-gpus {executor.worker_gpus} needs "
                f"{workers * executor.worker_gpus:g} GPUs; the cluster has {gpus:g}.",
                f"at most {fit} workers.",
                f"pass --workers {fit} or lower --worker-gpus.",
            )
        return Cluster(workers, executor.worker_gpus, 1.0, executor.ray_address)
    workers = executor.workers or 2
    # Without GPUs, workers share the cluster's CPUs: each reserves its share, so they all fit.
    return Cluster(workers, 0.0, min(1.0, cpus / workers), executor.ray_address)
