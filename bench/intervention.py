"""Benchmark of the intervention scorer: seconds per latent on this machine, default settings.

Collects a small database with the embedded default (or copies --db), gives --latents latents a fixed
explanation (the time does not depend on its wording), and runs the three intervention scorers with the
default settings (10 neutral prompts, 16-token continuations, 4 choices, target KL 1 nat) and the
embedded model as judge (in-process backend, guided answers), through the score stage itself.
Then reruns once to time the resume (everything stored: no steering, no call).

    python bench/intervention.py [--latents 4] [--db COLLECT.duckdb] [--prompts 10] [--tokens 16] [--threads N]

On a CPU shared with other busy processes, torch's default of one thread per core can be many times
slower than --threads 1 (its threads wait on each other); the JSON says how many were used.

Prints progress lines, then one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.collect.stage import collect  # noqa: E402
from autointerp.config import CollectConfig, ScoreConfig  # noqa: E402
from autointerp.llm.local_backend import LocalBackend  # noqa: E402
from autointerp.score.stage import score  # noqa: E402
from autointerp.store.db import connect  # noqa: E402

EXPLANATIONS = [
    "names of rivers",
    "dates and years",
    "units of measurement",
    "the word 'the'",
    "sports teams",
    "chemical elements",
    "cities in France",
    "verbs in the past tense",
]


def run_once(db: Path, config: ScoreConfig, backend) -> dict:
    """One score run of the intervention scorers with ``backend`` as judge (the stage, its runner and
    its single writer, as `autointerp score` runs them)."""
    start = time.perf_counter()
    result = asyncio.run(score(config, db, progress=False, backend=backend))
    return {
        "seconds": time.perf_counter() - start,
        "steered": result.resources["steering"]["steered"],
        "calls": result.calls,
        "torch_seconds": result.resources["steering"]["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=4)
    parser.add_argument("--db", help="a collect database to copy (default: collect a small one)")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-intervention-"))
    db = work / "bench.duckdb"
    if args.db:
        shutil.copy(args.db, db)
    else:
        print("collecting a small database ...", flush=True)
        collect(
            CollectConfig(
                tokens=6144,
                top_k=3,
                n_quantiles=2,
                explain_per_quantile=1,
                test_per_quantile=1,
                reservoir=8,
                random_explain=2,
                random_test=2,
            ),
            db,
            progress=False,
        )
    con = connect(db)
    latents = [
        r[0]
        for r in con.execute(
            "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT ?", [args.latents]
        ).fetchall()
    ]
    for i, latent in enumerate(latents):
        con.execute(
            "INSERT INTO explanation_rows VALUES (?, 'bench', 'bench', 'default', 'bench', 'explained', ?, "
            "NULL, NULL, NULL, 0, 0, 0, now())",
            [latent, EXPLANATIONS[i % len(EXPLANATIONS)]],
        )
    con.close()

    config = ScoreConfig(scorers="intervention", intervention_prompts=args.prompts, completion_tokens=args.tokens)
    print("loading the judge ...", flush=True)
    backend = LocalBackend()
    print(f"scoring {len(latents)} latents ...", flush=True)
    first = run_once(db, config, backend)
    again = run_once(db, config, backend)
    con = connect(db)
    scores = con.execute("SELECT latent, scorer, status, round(score, 3), reason FROM scores ORDER BY ALL").fetchall()
    kl = con.execute("SELECT min(achieved_kl), max(achieved_kl) FROM interventions WHERE steered").fetchone()
    con.close()
    for row in scores:
        print(*row, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(
        json.dumps(
            {
                "latents": len(latents),
                "prompts": args.prompts,
                "completion_tokens": args.tokens,
                "threads": __import__("torch").get_num_threads(),
                "seconds_per_latent": round(first["seconds"] / len(latents), 2),
                "steering_seconds_per_latent": round(first["torch_seconds"]["steering"] / len(latents), 2),
                "surprisal_seconds_per_latent": round(first["torch_seconds"]["surprisal"] / len(latents), 2),
                "rerun_seconds": round(again["seconds"], 2),
                "rerun_calls": again["calls"],
                "rerun_steered": again["steered"],
                "judge_calls": first["calls"],
                "achieved_kl_range": [round(kl[0], 3), round(kl[1], 3)] if kl[0] is not None else None,
                "target_kl": config.target_kl,
            }
        )
    )


if __name__ == "__main__":
    main()
