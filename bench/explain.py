"""Benchmark of the explain stage.

1. Queue overhead against a fast local OpenAI-compatible endpoint (a separate process that answers at
   once with a fixed completion, so the figures are about our client side): requests/s sustained at N
   in flight, the client CPU time per request through the queue minus the same requests sent straight
   through the backend, and the share of the run during which the endpoint had no request from us
   although work remained.
2. The embedded default end to end: latents per minute and prompt / completion tokens per latent with
   the in-process SmolLM2-135M-Instruct on a fresh collect.

    python bench/explain.py [--requests 2000] [--latents 4]

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

from autointerp.collect.stage import collect  # noqa: E402
from autointerp.config import CollectConfig, ExplainConfig  # noqa: E402
from autointerp.explain.stage import explain  # noqa: E402
from autointerp.llm.base import GenerateOptions  # noqa: E402
from autointerp.llm.openai_backend import OpenAIBackend  # noqa: E402
from autointerp.llm.queue import LLMQueue, QueueConfig  # noqa: E402

FAST_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
BODY = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "fast",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "[EXPLANATION]: fast"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}}).encode()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body leave in one write
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY))); self.end_headers(); self.wfile.write(BODY)
ThreadingHTTPServer.request_queue_size = 256
s = ThreadingHTTPServer(("127.0.0.1", 0), H); s.daemon_threads = True
print(s.server_address[1], flush=True); s.serve_forever()
"""

MESSAGES = [
    {"role": "system", "content": "You explain features."},
    {"role": "user", "content": "Excerpt 1: the<< river>> flows\nActive: river (10)\n" * 20},
]
OPTIONS = GenerateOptions(max_tokens=50)


async def _run(n_requests: int, in_flight: int, base_url: str, through_queue: bool) -> dict:
    backend = OpenAIBackend("fast", base_url)
    queue = LLMQueue(backend, QueueConfig(max_in_flight=in_flight), on_call=lambda record: None)
    slots = asyncio.Semaphore(in_flight)

    async def direct():
        async with slots:
            await backend.generate(MESSAGES, OPTIONS)

    async def queued(i):
        await queue.run(MESSAGES, OPTIONS, f"item {i}", "bench")

    await (queued(-1) if through_queue else direct())  # warm the connection pool
    queue.stats.busy_seconds = 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*[(queued(i) if through_queue else direct()) for i in range(n_requests)])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await backend.aclose()
    return {
        "rps": n_requests / wall,
        "cpu_ms_per_request": 1000 * cpu / n_requests,
        "wall": wall,
        "busy_share": queue.stats.busy_seconds / wall if through_queue else None,
    }


def queue_overhead(n_requests: int) -> dict:
    server = subprocess.Popen([sys.executable, "-c", FAST_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        base_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        out = {}
        for in_flight in (1, 8, 32):
            raw = asyncio.run(_run(n_requests, in_flight, base_url, through_queue=False))
            queued = asyncio.run(_run(n_requests, in_flight, base_url, through_queue=True))
            out[in_flight] = {
                "rps_direct": round(raw["rps"], 1),
                "rps_queue": round(queued["rps"], 1),
                "queue_cpu_ms_per_request": round(queued["cpu_ms_per_request"] - raw["cpu_ms_per_request"], 3),
                "endpoint_busy_share": round(queued["busy_share"], 3),
            }
            print(f"in flight {in_flight}: {out[in_flight]}", flush=True)
        return out
    finally:
        server.kill()


def embedded_default(n_latents: int, tmp: Path) -> dict:
    db = tmp / "explain.duckdb"
    collect(CollectConfig(tokens=60_000), db, progress=False)
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    latents = [
        r[0]
        for r in con.execute(
            "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT ?", [n_latents]
        ).fetchall()
    ]
    con.close()
    start = time.perf_counter()
    result = asyncio.run(explain(ExplainConfig(latents=",".join(map(str, latents))), db, progress=False))
    minutes = (time.perf_counter() - start) / 60
    return {
        "latents": len(latents),
        "latents_per_minute": round(len(latents) / minutes, 3),
        "prompt_tokens_per_latent": round(result.prompt_tokens / len(latents), 1),
        "completion_tokens_per_latent": round(result.completion_tokens / len(latents), 1),
        "explained": result.explained,
        "unparsed": result.unparsed,
        "failed": result.failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--latents", type=int, default=4)
    args = parser.parse_args()
    overhead = queue_overhead(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        local = embedded_default(args.latents, Path(tmp))
    print(f"embedded default: {local}", flush=True)
    worst = max(v["queue_cpu_ms_per_request"] for v in overhead.values())
    print(
        json.dumps(
            {
                "queue": overhead,
                "queue_cpu_ms_per_request_worst": worst,
                "target_queue_cpu_ms_per_request": 2.0,
                "embedded_default": local,
            }
        )
    )


if __name__ == "__main__":
    main()
