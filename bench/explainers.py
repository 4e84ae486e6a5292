"""Explain strategies compared on one fixed latent set: single, best-of-k and refined.

One collect (with a validate split), then per strategy a copy of it explained with
``autointerp explain --candidates K`` / ``--refine R`` and scored on the test split. Reported (JSON on the
last line), per strategy:

- **test scores** per scorer (detection and fuzzing by default): the mean over latents with a 95%
  t-interval, and the mean width of the per-latent intervals (``ci_low``, ``ci_high``);
- **validation-to-test gap**: for the explanations chosen on the validate split
  (``explanation_candidates.chosen``), their validation score minus their test score under the same
  measure (the run's ``select_by``), mean and bootstrap 95% interval: how much selection overfits;
- **cost**: calls, prompt, cached prompt and completion tokens per latent per purpose (``llm_costs``),
  and dollars with --price-in/--price-out (--price-cached);
- **detection vs detection_hard** (hard negatives), where that scorer exists, else said missing;
- with --planted, over a planted SAE (bench/planted.py, docs/planted.md): **recovery** of the planted
  concept by each strategy's explanations (rank of the true description by embedding similarity).

The quality rows (scores, gap, recovery) only mean something with a capable explainer and judge: on the
embedded 135M model they sit near chance whatever the strategy, and the report marks them
``needs_capable_model``; the plumbing figures (calls, tokens per latent) hold on any backend. The bench
runs unchanged with ``--backend openai --model M --base-url URL``.

    python bench/explainers.py [--latents 3] [--candidates 4] [--refine 2] [--scorers detection,fuzzing]
                               [--planted] [--backend openai --model M --base-url URL]
                               [--price-in P --price-out Q --price-cached C]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
from planted import CONCEPTS, bootstrap_mean, cli, planted_latents, recovery_ranks  # noqa: E402
from scipy import stats  # noqa: E402

from autointerp.plan.costs import Prices, cost_rows  # noqa: E402
from autointerp.score.registry import SCORERS  # noqa: E402

LLM_JUDGED = {"detection", "fuzzing", "simulation", "detection_hard"}


def strategies(candidates: int, refine: int) -> dict[str, list[str]]:
    """Each strategy's name and its explain flags."""
    return {
        "single": ["--candidates", "1"],
        f"best_of_{candidates}": ["--candidates", str(candidates)],
        f"refine_{refine}": ["--refine", str(refine)],
    }


def mean_t(values: list[float]) -> dict:
    """Mean over latents with its 95% t-interval (None where undefined)."""
    v = np.asarray([x for x in values if x is not None and x == x], dtype=float)
    out = {"n": len(v), "mean": round(float(v.mean()), 4) if len(v) else None, "ci95": None}
    if len(v) >= 2:
        half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
        out["ci95"] = [round(float(v.mean() - half), 4), round(float(v.mean() + half), 4)]
    return out


def test_scores(con, scorers: list[str]) -> dict:
    """Per scorer: the mean test score over latents with its t-interval and the mean per-latent interval width."""
    out = {}
    for scorer in scorers:
        rows = con.execute(
            "SELECT score, ci_high - ci_low FROM scores WHERE scorer = ? AND control = '' AND score IS NOT NULL "
            "QUALIFY row_number() OVER (PARTITION BY latent ORDER BY created_at DESC) = 1",
            [scorer],
        ).fetchall()
        out[scorer] = mean_t([r[0] for r in rows])
        widths = [r[1] for r in rows if r[1] is not None]
        out[scorer]["mean_latent_ci_width"] = round(float(np.mean(widths)), 4) if widths else None
    return out


def validation_gap(con, seed: int) -> dict:
    """Validation score minus test score of the chosen explanations, under the run's select_by measure."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'explanation_candidates'").fetchone()[
        0
    ]:
        return {"n": 0, "note": "no explanation_candidates table (branch select not merged)"}
    rows = con.execute(
        "SELECT c.validation_score, s.score FROM explanation_candidates c JOIN runs r ON r.run_id = c.run_id "
        "JOIN scores s ON s.explanation_id = c.config_hash || '/' || c.latent AND s.control = '' "
        " AND s.scorer = coalesce(json_extract_string(r.config, '$.select_by'), 'detection') "
        "WHERE c.chosen AND c.validation_score IS NOT NULL AND s.score IS NOT NULL "
        "QUALIFY row_number() OVER (PARTITION BY c.latent, c.config_hash ORDER BY c.round DESC, s.created_at DESC) = 1"
    ).fetchall()
    gaps = [v - t for v, t in rows]
    return {
        "n": len(gaps),
        "mean_validation": round(float(np.mean([r[0] for r in rows])), 4) if rows else None,
        "mean_test": round(float(np.mean([r[1] for r in rows])), 4) if rows else None,
        "mean_gap": round(float(np.mean(gaps)), 4) if gaps else None,
        "gap_ci95": bootstrap_mean(gaps, seed),
    }


def costs(con, n_latents: int, prices: Prices | None) -> dict:
    """The explain run's calls and tokens per latent per purpose (and dollars), from llm_costs."""
    out = {}
    for row in cost_rows(con, prices):
        if row.stage != "explain":
            continue
        entry = {
            "strategy": row.strategy,
            "calls_per_latent": round(row.calls / n_latents, 2),
            "prompt_tokens_per_latent": round(row.prompt_tokens / n_latents, 1),
            "cached_tokens_per_latent": round(row.cached_tokens / n_latents, 1),
            "cached_estimated": row.estimated,
            "completion_tokens_per_latent": round(row.completion_tokens / n_latents, 1),
            "failed_calls": row.failed_calls,
        }
        if row.dollars is not None:
            entry["dollars_per_latent"] = round(row.dollars / n_latents, 6)
        out[row.purpose] = entry
    total = {
        key: round(sum(e[key] for e in out.values()), 2)
        for key in ("calls_per_latent", "prompt_tokens_per_latent", "completion_tokens_per_latent")
    }
    if prices is not None:
        total["dollars_per_latent"] = round(sum(e.get("dollars_per_latent", 0.0) for e in out.values()), 6)
    return {"by_purpose": out, "total": total}


def choose_latents(db: Path, n: int) -> list[int]:
    """The ``n`` ok latents with the most activating contexts (the fullest validate and test sets)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT latent FROM latents WHERE status = 'ok' ORDER BY n_active_contexts DESC, latent LIMIT ?", [n]
            ).fetchall()
        ]
    finally:
        con.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="", help="folder for the databases (default: a temporary folder)")
    p.add_argument("--tokens", type=int, default=40_000, help="collect tokens (planted: at least 200000)")
    p.add_argument("--latents", type=int, default=3, help="latents compared (the fixed set)")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--refine", type=int, default=2)
    p.add_argument("--scorers", default="detection,fuzzing", help="comma-separated test scorers")
    p.add_argument("--planted", action="store_true", help="collect over a planted SAE and report concept recovery")
    p.add_argument("--backend", default="local")
    p.add_argument("--model", default="")
    p.add_argument("--base-url", default="")
    for name in ("in", "out", "cached"):
        p.add_argument(f"--price-{name}", type=float, default=None, metavar="USD", help="dollars per million tokens")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    started = time.perf_counter()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="explainers-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    prices = None
    if args.price_in is not None or args.price_out is not None or args.price_cached is not None:
        prices = Prices(args.price_in or 0.0, args.price_out or 0.0, args.price_cached)
    scorers = [s.strip() for s in args.scorers.split(",") if s.strip()]
    hard = "detection_hard" in SCORERS
    if hard and "detection" in scorers and "detection_hard" not in scorers:
        scorers.append("detection_hard")
    llm = ["--backend", args.backend] + (["--model", args.model] if args.model else [])
    llm += ["--base-url", args.base_url] if args.base_url else []
    quiet = ["--quiet"]

    base = work / "collect.duckdb"
    planted = []
    collect = ["collect", "--db", str(base), "--tokens", str(args.tokens), *quiet]
    collect += ["--validate-per-quantile", "1", "--random-validate", "4"]
    if hard:
        collect += ["--hard-negatives", "4"]
    if args.planted:
        planted = planted_latents(1, False, list(CONCEPTS))
        spec = work / "planted.json"
        spec.write_text(json.dumps({"seed": args.seed, "latents": [
            {"description": lat["truth"], "rule": lat["rule"], "density": lat["density"], "fidelity": lat["fidelity"]}
            for lat in planted
        ]}))  # fmt: skip
        collect += ["--sae", f"planted:{spec}"]
    if not base.exists():
        cli(*collect)
    latents = choose_latents(base, args.latents)
    if not latents:
        sys.exit("no ok latent to explain: raise --tokens")
    chosen = ",".join(map(str, latents))
    report: dict = {}
    for name, flags in strategies(args.candidates, args.refine).items():
        db = work / f"{name}.duckdb"
        shutil.copy(base, db)
        t = time.perf_counter()
        code = cli("explain", "--db", str(db), "--latents", chosen, *flags, *llm, *quiet, required=False)
        explain_s = time.perf_counter() - t
        if code not in (0, 1):  # 1: some latents unparsed or failed, reported below
            report[name] = {"error": f"explain exited {code}"}
            continue
        cli("score", "--db", str(db), "--latents", chosen, "--scorers", ",".join(scorers), *llm, *quiet, required=False)
        con = duckdb.connect(str(db), read_only=True)
        try:
            status = dict(con.execute("SELECT status, count(*) FROM explanations GROUP BY status").fetchall())
            own = dict(
                con.execute("SELECT latent, explanation FROM explanations WHERE status = 'explained'").fetchall()
            )
            report[name] = {
                "explanations": status,
                "test_scores": test_scores(con, scorers),
                "validation_to_test": validation_gap(con, args.seed),
                "cost": costs(con, len(latents), prices),
                "explain_seconds": round(explain_s, 1),
            }
            if planted:
                report[name]["planted_recovery"] = recovery_ranks(own, planted)
        finally:
            con.close()
    capable = args.backend != "local" or bool(args.model)
    print(
        json.dumps(
            {
                "bench": "explainers",
                "latents": latents,
                "backend": args.backend,
                "model": args.model or "embedded SmolLM2-135M-Instruct",
                "scorers": scorers,
                "needs_capable_model": {s: s in LLM_JUDGED and not capable for s in scorers}
                | {"validation_to_test": not capable, "planted_recovery": not capable},
                "detection_hard": "compared"
                if hard
                else "missing: the detection_hard scorer (branch hardneg) is not in this checkout",
                "planted": "recovery reported per strategy" if planted else "not run (pass --planted)",
                "prices_per_million": None
                if prices is None
                else {"in": prices.prompt, "cached": prices.cached_price, "out": prices.completion},
                "strategies": report,
                "note": "calls and tokens per latent hold on any backend; scores, the validation-to-test gap and "
                "recovery need a capable model (on the embedded 135M model they sit near chance).",
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
