"""Benchmark of the driver of explain with --executor ray: how many LLM calls per second one driver
(prompt building, parsing, the single DuckDB writer and, with Ray, the hop to a worker) sustains.

Two local OpenAI-compatible endpoints that answer at once with a fixed explanation (separate processes,
bench/explain.py's fast server) stand in for an LLM fleet of unlimited speed, so the figures are the
ceiling of our side: explain over every explainable latent of a small collect, then detection over
the first --score-latents of them (the fast answer is no valid verdict: every context's row is still
written, with its reason, which is the writer's work of a real run),
  (a) locally, the two endpoints behind one MultiEndpointBackend;
  (b) --executor ray with 2 workers (one endpoint each) on a private local Ray instance;
in calls and latents per second, and the driver's CPU milliseconds per call. docs/scaling.md divides an
LLM fleet's latents/s by these to find where the driver becomes the bottleneck.

    python bench/scale_llm.py [--tokens 12288] [--in-flight 32]

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from explain import FAST_SERVER  # noqa: E402  (bench/explain.py)

from autointerp.collect.stage import collect  # noqa: E402
from autointerp.config import CollectConfig, ExecutorConfig, ExplainConfig, ScoreConfig  # noqa: E402
from autointerp.executor import Executor  # noqa: E402
from autointerp.explain.stage import explain  # noqa: E402
from autointerp.scale import RayExecutor  # noqa: E402
from autointerp.score.stage import score  # noqa: E402

SMALL = dict(
    seq_len=256,
    batch_size=8,
    top_k=3,
    n_quantiles=2,
    explain_per_quantile=1,
    test_per_quantile=1,
    reservoir=8,
    random_explain=2,
    random_test=2,
)


def timed_explain(db: Path, urls: list[str], in_flight: int, executor: Executor | None) -> dict:
    config = ExplainConfig(
        backend="openai",
        model="fast",
        base_url=",".join(urls),
        api_key_env="BENCH_KEY",
        max_in_flight=in_flight,
        max_retries=2,
    )
    cpu, wall = time.process_time(), time.perf_counter()
    result = asyncio.run(explain(config, db, progress=False, executor=executor))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "latents": result.explained,
        "calls": result.calls,
        "wall_s": round(wall, 2),
        "calls_per_s": round(result.calls / wall, 1),
        "driver_cpu_ms_per_call": round(1000 * cpu / result.calls, 2),
    }


def timed_score(db: Path, urls: list[str], in_flight: int, executor: Executor | None, latents: int) -> dict:
    config = ScoreConfig(
        backend="openai",
        model="fast",
        base_url=",".join(urls),
        api_key_env="BENCH_KEY",
        max_in_flight=in_flight,
        max_retries=2,
        scorers="detection",
        latents=f"0-{latents}",
    )
    cpu, wall = time.process_time(), time.perf_counter()
    result = asyncio.run(score(config, db, progress=False, executor=executor))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = result.scored + result.unscored
    return {
        "scores": n,
        "calls": result.calls,
        "wall_s": round(wall, 2),
        "calls_per_s": round(result.calls / wall, 1),
        "latents_per_s": round(n / wall, 2),
        "driver_cpu_ms_per_call": round(1000 * cpu / result.calls, 2),
    }


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=12288)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--score-latents", type=int, default=600, help="latent indices 0..N are scored")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_KEY", "not-a-secret")
    servers = [
        subprocess.Popen([sys.executable, "-c", FAST_SERVER], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    try:
        urls = [f"http://127.0.0.1:{int(s.stdout.readline())}/v1" for s in servers]
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "base.duckdb"
            collect(CollectConfig(tokens=args.tokens, **SMALL), base, progress=False)
            print("collected", flush=True)
            results = {}
            for name, executor in (
                ("local", None),
                ("ray_2_workers", RayExecutor(ExecutorConfig(executor="ray", workers=2))),
            ):
                db = Path(tmp) / f"{name}.duckdb"
                db.write_bytes(base.read_bytes())
                results[name] = timed_explain(db, urls, args.in_flight, executor)
                print(name, results[name], flush=True)
                results[name + "_score"] = timed_score(db, urls, args.in_flight, executor, args.score_latents)
                print(name + "_score", results[name + "_score"], flush=True)
    finally:
        for s in servers:
            s.kill()
    results["ray_over_local_calls_per_s"] = round(
        results["ray_2_workers"]["calls_per_s"] / results["local"]["calls_per_s"], 2
    )
    results["in_flight"] = args.in_flight
    print(json.dumps(results))


if __name__ == "__main__":
    main()
