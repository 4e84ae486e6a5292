"""Benchmark of `latent_summary` at scale.

Generates (with SQL, no model) a database of N latents (default 1M) with one explanation per latent
(10% of latents explained twice, by a later configuration; 5% unparsed or failed), ~4M score rows
(detection, fuzzing and embedding for every explanation, an older second detection configuration for
5%, simulation for 1/4, the three intervention scorers for 1/10, shuffled controls for 1/3, 2% unscored),
then times, after one warm-up, best and median of --runs:

- top100: `SELECT * FROM latent_summary WHERE frequency BETWEEN 1e-4 AND 1e-2 AND detection_score > 0.7
  ORDER BY fuzzing_score DESC LIMIT 100` (target < 200 ms);
- count: `SELECT count(*) FROM latent_summary`;
- lookup: one latent's row;
- live_top100: the same query on `latent_summary_live`, the view computed from the tables, which is
  what `latent_summary` would cost as a plain view;
- the stored copy's full refresh, a refresh after a run that wrote 1,000 latents, and `open_db`.

    python bench/query.py [--latents 1000000] [--runs 10] [--db PATH]

With --db PATH the database is kept there (and reused when it exists). Prints progress lines, then one
JSON object on the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autointerp.query.api import open_db  # noqa: E402
from autointerp.store.db import connect  # noqa: E402
from autointerp.store.summary import refresh_latent_summary  # noqa: E402

TOP100 = (
    "SELECT * FROM {view} WHERE frequency BETWEEN 1e-4 AND 1e-2 AND detection_score > 0.7 "
    "ORDER BY fuzzing_score DESC LIMIT 100"
)
TARGET_MS = 200.0

STATS = """
INSERT INTO runs VALUES ('collect-bench', 'collect', '{{}}', 'bench', 'complete', NULL, 0, 'bench', now(), now(), '{{}}');
INSERT INTO collections VALUES ('collect-bench', 'bench-model', 'model.layers.8', 'bench-sae', 'bench-corpus', {n},
  40000, 10000000, 256, 32, [pow(10, -3 + 7.0 * i / 40) for i in range(41)]);
-- frequencies log-uniform over 1e-7 .. 1; a latent that fired fewer than 30 times has too few examples
INSERT INTO latent_stats
SELECT 'collect-bench', i::INTEGER, 'model.layers.8', n_firing, 10000000, n_firing / 1e7, max_act::FLOAT,
  CASE WHEN n_firing > 0 THEN (max_act / 3)::FLOAT END, least(n_firing, 40000),
  [(hash(i, b) % 1000)::BIGINT for b in range(42)], [(max_act * q / 10)::FLOAT for q in range(10)],
  CASE WHEN n_firing = 0 THEN 'dead' WHEN n_firing < 30 THEN 'too_few_examples' ELSE 'ok' END,
  CASE WHEN n_firing = 0 THEN 'never fired' WHEN n_firing < 30 THEN 'fewer contexts than the configuration needs' END
FROM (SELECT i, (pow(10, 7 * ((hash(i) % 1000000) / 1e6)) - 1)::BIGINT AS n_firing,
             1 + (hash(i, 'a') % 5000) / 100.0 AS max_act FROM range({n}) t(i));
"""

EXPLANATIONS = """
INSERT INTO explanation_rows
SELECT latent, cfg, 'explain-' || cfg, 'default', 'llama-3.1-70b',
  CASE WHEN h < 95 THEN 'explained' WHEN h < 98 THEN 'unparsed' ELSE 'failed' END,
  CASE WHEN h < 95 THEN 'tokens about topic ' || latent || ', mostly names, dates and places in news text' END,
  CASE WHEN h >= 95 THEN 'no [EXPLANATION] line in the answer' END,
  'The examples share ... [EXPLANATION]: tokens about topic ' || latent, latent * 2 + (cfg = 'cfgB')::INT, 1,
  1800, 40, TIMESTAMP '2025-01-01' + INTERVAL (latent % 86400) SECOND
            + CASE WHEN cfg = 'cfgB' THEN INTERVAL 2 DAY ELSE INTERVAL 0 DAY END
FROM (SELECT i::INTEGER AS latent, 'cfgA' AS cfg, hash(i, 'e') % 100 AS h FROM range({n} - {n} // 10) t(i)
      UNION ALL SELECT i::INTEGER, 'cfgB', hash(i, 'f') % 100 FROM range({n} // 10) t(i));
"""

SCORES = """
INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, status, reason,
  n_examples, n_unscored, balanced_accuracy, accuracy, precision, recall, f1, auroc, quantile_recall, chance, n_calls,
  prompt_tokens, completion_tokens, fixed_prompt_tokens, created_at, score, correlation, detail)
SELECT e.latent, e.config_hash || '/' || CASE WHEN c.control = '' THEN e.latent ELSE (e.latent + 7) % {n} END,
  s.scorer, 'llama-3.1-8b', 'sc-' || s.scorer || k.cfg, c.control, 'score-bench',
  CASE WHEN hash(e.latent, s.scorer) % 100 < 98 THEN 'scored' ELSE 'unscored' END,
  CASE WHEN hash(e.latent, s.scorer) % 100 >= 98 THEN 'no readable answer' END,
  60, 0, v, v, v, v, v, CASE WHEN s.scorer IN ('detection', 'fuzzing') THEN v END,
  '{{"0": 0.5, "9": 0.95}}', '{{"score": 0.5, "balanced_accuracy": 0.5}}', 3, 6000, 60, 4000,
  e.created_at + INTERVAL 1 DAY - CASE WHEN k.cfg = '-old' THEN INTERVAL 12 HOUR ELSE INTERVAL 0 HOUR END,
  CASE WHEN hash(e.latent, s.scorer) % 100 < 98 THEN v END, NULL, NULL
FROM explanation_rows e
CROSS JOIN (VALUES ('detection'), ('fuzzing'), ('embedding'), ('simulation'), ('intervention'),
                   ('intervention_choice'), ('intervention_surprisal')) s(scorer)
CROSS JOIN (VALUES (''), ('shuffled')) c(control)
CROSS JOIN (VALUES (''), ('-old')) k(cfg),
LATERAL (SELECT CASE WHEN c.control = '' THEN 0.4 + (hash(e.latent, s.scorer, e.config_hash, k.cfg) % 600) / 1000.0
                     ELSE 0.4 + (hash(e.latent, s.scorer) % 200) / 1000.0 END AS v)
WHERE e.status = 'explained' AND (k.cfg = '' OR (s.scorer = 'detection' AND c.control = '' AND e.latent % 20 = 0)) AND (
      (c.control = '' AND s.scorer IN ('detection', 'fuzzing', 'embedding'))
   OR (c.control = '' AND s.scorer = 'simulation' AND e.latent % 4 = 0)
   OR (c.control = '' AND s.scorer LIKE 'intervention%' AND e.latent % 10 = 1)
   OR (c.control = 'shuffled' AND s.scorer IN ('detection', 'fuzzing') AND e.latent % 3 = 0 AND e.config_hash = 'cfgA'));
"""


def log(message: str) -> None:
    print(message, flush=True)


def generate(path: Path, n: int) -> dict:
    """Write the synthetic database; returns its row counts and the seconds each step took."""
    figures = {}
    con = connect(path)
    try:
        con.execute("SET enable_progress_bar = false")
        for name, sql in (("stats", STATS), ("explanations", EXPLANATIONS), ("scores", SCORES)):
            t = time.perf_counter()
            con.execute(sql.format(n=n))
            figures[f"generate_{name}_s"] = round(time.perf_counter() - t, 2)
            log(f"generated {name} in {figures[f'generate_{name}_s']} s")
        t = time.perf_counter()
        refresh_latent_summary(con)
        figures["refresh_full_s"] = round(time.perf_counter() - t, 2)
        log(f"full refresh of latent_summary: {figures['refresh_full_s']} s")
        # What a run that wrote 1,000 latents pays at its end.
        sample = [
            r[0] for r in con.execute(f"SELECT i::INTEGER FROM range(0, {n}, greatest({n} // 1000, 1)) t(i)").fetchall()
        ]
        con.execute(
            "UPDATE score_rows SET created_at = now() WHERE latent IN (SELECT unnest(?::INTEGER[])) "
            "AND scorer = 'detection' AND control = ''",
            [sample],
        )
        t = time.perf_counter()
        refresh_latent_summary(con, sample)
        figures["refresh_1000_latents_s"] = round(time.perf_counter() - t, 2)
        log(f"refresh after a run that wrote {len(sample)} latents: {figures['refresh_1000_latents_s']} s")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return figures


def timed(con, sql: str, runs: int, params=None) -> dict:
    con.execute(sql, params).fetchall()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        con.execute(sql, params).fetchall()
        times.append((time.perf_counter() - t) * 1000)
    return {"best_ms": round(min(times), 1), "median_ms": round(statistics.median(times), 1)}


def measure(path: Path, runs: int, live_runs: int) -> dict:
    t = time.perf_counter()
    db = open_db(path)
    figures = {"open_db_ms": round((time.perf_counter() - t) * 1000, 1), "summary_is_live": db.summary_is_live}
    with db:
        con = db.con
        counts = con.execute(
            "SELECT (SELECT count(*) FROM latent_stats), (SELECT count(*) FROM explanation_rows), "
            "(SELECT count(*) FROM score_rows)"
        ).fetchall()[0]
        figures.update(latents=counts[0], explanation_rows=counts[1], score_rows=counts[2])
        figures["top100_rows"] = len(con.execute(TOP100.format(view="latent_summary")).fetchall())
        figures["top100"] = timed(con, TOP100.format(view="latent_summary"), runs)
        log(f"top100: {figures['top100']}")
        figures["count"] = timed(con, "SELECT count(*) FROM latent_summary", runs)
        log(f"count: {figures['count']}")
        figures["lookup"] = timed(con, "SELECT * FROM latent_summary WHERE latent = ?", runs, [counts[0] // 2 + 17])
        log(f"lookup: {figures['lookup']}")
        if live_runs:
            figures["live_top100"] = timed(con, TOP100.format(view="latent_summary_live"), live_runs)
            log(f"live_top100 (the plain view): {figures['live_top100']}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latents", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--live-runs", type=int, default=3, help="runs of the plain-view query (0: skip it)")
    parser.add_argument("--db", type=Path, help="keep the generated database here (reused when it exists)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "query-bench.duckdb"
        figures = {} if path.exists() else generate(path, args.latents)
        figures.update(measure(path, args.runs, args.live_runs))
    figures.update(
        target_top100_ms=TARGET_MS,
        meets_target=figures["top100"]["median_ms"] < TARGET_MS,
        cpus=os.cpu_count(),
        load_average_1min=round(os.getloadavg()[0], 2),
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
