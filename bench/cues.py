"""Measure the cue probes on a database's stored test sets, without an LLM or an explanation.

    python bench/cues.py DB [--latents 200] [--demo]

Builds each ok latent's detection and fuzzing samples exactly as the scorers would (``--demo``: the
demo's fuzzing negatives, 10 + 10; else the ScoreConfig defaults) and prints every probe's mean
leave-one-out balanced accuracy (``score.cues``), and its "one-way" accuracy: the same with every latent's
rule pointed the way most latents' rules point, which separates cues of how the test sets are built
(the same on every latent) from cues of a latent's content. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys

import duckdb
import numpy as np

from autointerp.config import ScoreConfig
from autointerp.demo.settings import SCORE as DEMO_SCORE
from autointerp.models.special import collect_special_ids
from autointerp.score import classifier, cues
from autointerp.score.scorers.cues import task_samples
from autointerp.score.stage import read_test_sets
from autointerp.store.runs import latest_collect_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db")
    parser.add_argument("--latents", type=int, default=200, help="ok latents measured (the first ones)")
    parser.add_argument("--demo", action="store_true", help="the demo's fuzzing settings")
    args = parser.parse_args()
    config = ScoreConfig(**(DEMO_SCORE if args.demo else {}))
    con = duckdb.connect(args.db, read_only=True)
    latents = [r[0] for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent").fetchall()]
    latents = latents[: args.latents]
    special = collect_special_ids(latest_collect_config(con))
    tests = read_test_sets(con.cursor(), latents, special)
    scores: dict[str, list[tuple[float, float]]] = {}
    for latent in latents:
        for task in cues.PROBES:
            rng = classifier.latent_rng(config.seed, latent, task)
            samples = task_samples(task, tests[latent], config, rng)
            for name, (ba, direction) in cues.probe_results(task, samples).items():
                if ba is not None:
                    scores.setdefault(name, []).append((ba, direction))
    means = {name: round(float(np.mean([b for b, _ in v])), 4) for name, v in scores.items()}
    consistent = {name: round(same_direction(v), 4) for name, v in scores.items()}
    print(f"{'probe':40s} {'mean BA':>8s} {'one-way':>8s}", file=sys.stderr)
    for name, mean in sorted(means.items(), key=lambda kv: -kv[1]):
        print(f"{name:40s} {mean:8.3f} {consistent[name]:8.3f}  (n={len(scores[name])} latents)", file=sys.stderr)
    print(
        json.dumps(
            {
                "db": args.db,
                "latents": len(latents),
                "demo": args.demo,
                "mean_balanced_accuracy": means,
                "one_way_balanced_accuracy": consistent,
            }
        )
    )


def same_direction(results: list[tuple[float, float]]) -> float:
    """The mean balanced accuracy had every latent's rule pointed the way most latents' rules point: a
    cue whose direction varies with the latent (its content) falls to 0.5, one that leaks how the test
    sets are built stays high."""
    majority = 1.0 if sum(d for _, d in results) >= 0 else -1.0
    return float(np.mean([ba if d * majority >= 0 else 1 - ba for ba, d in results]))


if __name__ == "__main__":
    main()
