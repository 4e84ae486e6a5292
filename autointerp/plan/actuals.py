"""A finished run's actual totals from ``llm_calls``, beside the plan of the same run (what the explain
and score commands print at their end)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import ExplainConfig, ScoreConfig
from .plan import Plan, make_plan
from .tokenizer import PromptTokenizer

#: Most latents of a run whose plan is recomputed at its end: a larger run is compared on an even sample
#: of this many (its actual calls are matched to the sample by their item, "latent N ...").
SAMPLE = 256


@dataclass
class Actuals:
    """What the run's logged calls cost (every attempt, retries and failures included)."""

    calls: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    fixed_prompt_tokens: int | None
    """The score rows' ``fixed_prompt_tokens`` (each scorer's system message, counted per answered
    call); None for explain, which records none."""


def run_latents(con, stage: str, run_id: str) -> list[int]:
    """The latents a run of ``stage`` wrote rows for."""
    table = "explanation_rows" if stage == "explain" else "score_rows"
    return [
        r[0]
        for r in con.execute(f"SELECT DISTINCT latent FROM {table} WHERE run_id = ? ORDER BY 1", [run_id]).fetchall()
    ]


def sample(latents: list[int], n: int = SAMPLE) -> list[int]:
    """At most ``n`` of ``latents``, evenly spread."""
    if len(latents) <= n:
        return latents
    return [latents[i * len(latents) // n] for i in range(n)]


def actuals(con, run_id: str, latents: list[int] | None = None) -> Actuals:
    """Totals of the run's calls (only those of ``latents`` when given)."""
    where = "run_id = ?"
    params: list = [run_id]
    if latents is not None:
        where += " AND TRY_CAST(regexp_extract(item, '^latent (\\d+)', 1) AS INTEGER) IN (SELECT unnest(?))"
        params.append(latents)
    calls, failed, prompt, completion = con.execute(
        "SELECT count(*), count(*) FILTER (error IS NOT NULL), coalesce(sum(prompt_tokens), 0), "
        f"coalesce(sum(completion_tokens), 0) FROM llm_calls WHERE {where}",
        params,
    ).fetchone()
    fixed = None
    if run_id.startswith("score"):
        sql = "SELECT coalesce(sum(fixed_prompt_tokens), 0) FROM score_rows WHERE run_id = ?"
        if latents is not None:
            sql += " AND latent IN (SELECT unnest(?))"
        fixed = con.execute(sql, params).fetchone()[0]
    return Actuals(calls, failed, int(prompt), int(completion), fixed)


def plan_beside_actuals(
    con, db: str, stage: str, run_id: str, config: ExplainConfig | ScoreConfig, tokenizer: PromptTokenizer
) -> tuple[Plan, Actuals, int] | None:
    """The plan of the latents the run ``run_id`` processed (an even sample of ``SAMPLE`` when more), the
    actuals of the same latents, and how many latents the run processed; None when it processed none."""
    latents = run_latents(con, stage, run_id)
    if not latents:
        return None
    chosen = sample(latents)
    explain = config if isinstance(config, ExplainConfig) else ExplainConfig()
    score = config if isinstance(config, ScoreConfig) else ScoreConfig()
    plan = make_plan(con, db, [stage], explain, score, tokenizer, latents={stage: chosen})
    return plan, actuals(con, run_id, chosen if len(chosen) < len(latents) else None), len(latents)


def render_beside(plan: Plan, act: Actuals, n_latents: int) -> str:
    """A small table: plan and actual calls and tokens of the same latents."""
    total = plan.counts.total
    scope = f"{plan.latents} latents" if plan.latents == n_latents else f"a sample of {plan.latents} of {n_latents}"
    rows = [
        ("calls", total.calls, act.calls),
        ("prompt tokens", total.prompt_tokens, act.prompt_tokens),
        ("  cacheable prefix (plan) / fixed (recorded)", total.cached_tokens, act.fixed_prompt_tokens),
        ("completion tokens (plan: budget)", total.completion_budget, act.completion_tokens),
    ]
    lines = [f"plan beside actuals ({scope}; plan tokenizer: {plan.tokenizer}):", f"{'':46}{'plan':>12}{'actual':>12}"]
    for name, planned, actual in rows:
        shown = "-" if actual is None else f"{actual:,}"
        lines.append(f"{name:46}{planned:>12,}{shown:>12}")
    if act.failed_calls:
        lines.append(f"({act.failed_calls} of the actual calls failed; retries are counted as calls)")
    return "\n".join(lines)


def to_dict(plan: Plan, act: Actuals, n_latents: int) -> dict:
    return {"plan": plan.to_dict(), "actual": asdict(act), "latents_in_run": n_latents}
