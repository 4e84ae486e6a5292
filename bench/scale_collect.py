"""Benchmark of `autointerp collect --executor ray` against the local collect, measured in one run.

On the same corpus slice and configuration (the embedded default's sizes):
  (a) the local collect (one process, torch's default threads), wall seconds and tokens/s;
  (b) the sharded collect on a private local Ray instance with --workers W, wall seconds and tokens/s,
      split into Ray start + worker loading, the workers' streaming time, and the driver's merge+write;
  the size of one shard's Parquet part (what each worker ships to the merge), and whether the two
  databases are equal row for row.

On this 2-core machine W workers share the same cores as the local run, so (b) / (a) measures the
overhead of sharding (Ray start, one model load per worker, tokenizing up to each shard, the parts and
the merge), not a speed-up; the speed-up comes from workers on separate GPUs (docs/scaling.md).

    python bench/scale_collect.py [--tokens 65536] [--workers 2]

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.collect.stage import collect  # noqa: E402
from autointerp.config import CollectConfig, ExecutorConfig  # noqa: E402
from autointerp.scale import RayExecutor  # noqa: E402


def same_rows(a: Path, b: Path) -> bool:
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    for table in ("collections", "contexts", "latent_examples", "latent_stats"):
        cols = ", ".join(
            f'"{r[0]}"'
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'a' AND table_name = ?",
                [table],
            ).fetchall()
            if r[0] != "run_id"
        )
        for x, y in (("a", "b"), ("b", "a")):
            if con.execute(
                f"SELECT count(*) FROM (SELECT {cols} FROM {x}.{table} EXCEPT ALL SELECT {cols} FROM {y}.{table})"
            ).fetchone()[0]:
                return False
    return True


def summary_of(db: Path) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return json.loads(
            con.execute("SELECT summary FROM runs WHERE stage = 'collect' AND status = 'complete'").fetchone()[0]
        )
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=65536)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = CollectConfig(tokens=args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        local = collect(config, tmp / "local.duckdb", progress=False)
        local_wall = time.perf_counter() - t0
        print(f"local: {local_wall:.1f} s wall, streaming {local.tokens_per_second:,.0f} tokens/s", flush=True)

        # One shard kept on disk to weigh it: a run with a separate parts folder, stopped after merging
        # is not possible from outside, so weigh a part written here on its own.
        t0 = time.perf_counter()
        ray = RayExecutor(ExecutorConfig(executor="ray", workers=args.workers))
        collect(config, tmp / "ray.duckdb", progress=False, executor=ray)
        ray_wall = time.perf_counter() - t0
        summary = summary_of(tmp / "ray.duckdb")
        print(f"ray ({args.workers} workers, {summary['shards']} shards): {ray_wall:.1f} s wall", flush=True)

        from autointerp.collect.stage import collect_identity
        from autointerp.collect.step import CollectStep
        from autointerp.executor import Shard

        req, identity = collect_identity(config)
        step = CollectStep(config, identity, tmp / "parts", req)
        loaded = step.setup()
        per_shard = summary["tokens_processed"] // summary["shards"] // config.seq_len
        t0 = time.perf_counter()
        step.save(step.run(loaded, Shard(0, per_shard), False), Shard(0, per_shard))
        one_shard = time.perf_counter() - t0
        part_bytes = sum(p.stat().st_size for p in (tmp / "parts").rglob("*") if p.is_file())
        equal = same_rows(tmp / "local.duckdb", tmp / "ray.duckdb")
        n_latents = int(loaded.dictionary.d_sae)
    result = {
        "tokens": args.tokens,
        "workers": args.workers,
        "shards": summary["shards"],
        "latents": n_latents,
        "local_wall_s": round(local_wall, 1),
        "local_tokens_per_s": round(local.tokens_per_second),
        "ray_wall_s": round(ray_wall, 1),
        "ray_tokens_per_s_wall": round(args.tokens / ray_wall),
        "ray_over_local_wall": round(ray_wall / local_wall, 2),
        "ray_worker_stream_s_total": summary["worker_seconds"],
        "ray_merge_s": summary["merge_seconds"],
        "one_shard_s_in_process": round(one_shard, 1),
        "part_mb_per_shard": round(part_bytes / 2**20, 1),
        "part_bytes_per_latent": round(part_bytes / n_latents),
        "equal_row_for_row": equal,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
