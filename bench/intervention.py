"""Benchmark of the intervention scorer: seconds per latent on this machine, default settings.

Collects a small database with the embedded default (or copies --db), gives --latents latents a fixed
explanation (the time does not depend on its wording), and runs the three intervention scorers with the
default settings (10 neutral prompts, 16-token continuations, 4 choices, target KL 1 nat) and the
embedded model as judge (in-process backend, guided answers), wired as the score stage wires them.
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
from autointerp.llm.base import GenerateOptions  # noqa: E402
from autointerp.llm.local_backend import LocalBackend  # noqa: E402
from autointerp.llm.queue import LLMQueue, QueueConfig  # noqa: E402
from autointerp.score.intervention_stage import InterventionScorer  # noqa: E402
from autointerp.score.stage import select_explanations  # noqa: E402
from autointerp.store import runs  # noqa: E402
from autointerp.store.db import connect  # noqa: E402
from autointerp.store.llm_log import CallLogWriter, run_logged  # noqa: E402

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
    con = connect(db)
    try:
        chosen = select_explanations(con, config)
        run_id = runs.new_run_id("score")
        runs.start_run(con, run_id, "score", config.to_dict(), "bench")
        writer = CallLogWriter(con, run_id, "score", backend.kind, backend.model)
        queue = LLMQueue(backend, QueueConfig(config.max_in_flight), on_call=writer.log_call)
        options = GenerateOptions(
            max_tokens=config.max_tokens, temperature=config.temperature, prefill=config.answer_prefill("[ANSWER]:")
        )
        start = time.perf_counter()
        scorer = InterventionScorer(con, config, queue, writer, run_id, options, backend.model, chosen)
        statuses = {}

        async def job(latent):
            statuses[latent] = await scorer.score_latent(latent)

        asyncio.run(run_logged(con, run_id, writer, (lambda lat=lat: job(lat) for lat in sorted(chosen)), 8))
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "statuses": statuses,
            "steered": len(scorer.computed),
            "calls": queue.stats.calls,
            "torch_seconds": scorer.seconds,
        }
    finally:
        con.close()


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
