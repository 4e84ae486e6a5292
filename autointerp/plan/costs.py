"""What runs actually spent, per run, strategy and purpose, read from the ``llm_costs`` view; and its
dollars at prices per million tokens.

``autointerp plan`` counts before a run; this reads the call log after it. Cached prompt tokens are what
the backend reported, else an estimate from the prompt prefix each call shared with earlier calls for
the same latent (``store/cached_prefix.py``): rows with any estimated part say so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import AutointerpError

COSTS = """
SELECT run_id, stage, coalesce(strategy, stage) AS strategy, purpose, model, latents, calls, failed_calls,
       prompt_tokens, completion_tokens, cached_tokens, cached_tokens_estimated
FROM llm_costs ORDER BY first_call_at, run_id, purpose
"""


@dataclass(frozen=True)
class Prices:
    """Dollars per million tokens: uncached prompt (``prompt``), cached prompt (``cached``; the prompt
    price when not given) and completion."""

    prompt: float = 0.0
    completion: float = 0.0
    cached: float | None = None

    @property
    def cached_price(self) -> float:
        return self.prompt if self.cached is None else self.cached

    def dollars(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
        """Dollars of the tokens: cached prompt tokens at the cached price, the rest of the prompt at the
        prompt price, completions at the completion price."""
        cached = min(cached_tokens, prompt_tokens)
        return (
            (prompt_tokens - cached) * self.prompt + cached * self.cached_price + completion_tokens * self.completion
        ) / 1e6


@dataclass
class CostRow:
    """One run's calls of one purpose (a row of ``llm_costs``); ``strategy`` is the explain strategy
    ('single', 'best_of_k K', 'refined R') or, for other stages, the stage."""

    run_id: str
    stage: str | None
    strategy: str
    purpose: str
    model: str
    latents: int
    calls: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cached_tokens_estimated: int
    dollars: float | None = None

    @property
    def estimated(self) -> bool:
        """True when part of the cached tokens is an estimate (the backend reported none for some calls)."""
        return self.cached_tokens_estimated > 0

    def per_latent(self, value: float) -> float:
        return value / self.latents if self.latents else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("calls", "prompt_tokens", "completion_tokens", "cached_tokens"):
            out[f"{key}_per_latent"] = self.per_latent(getattr(self, key))
        if self.dollars is not None:
            out["dollars_per_latent"] = self.per_latent(self.dollars)
        return out


def cost_rows(con, prices: Prices | None = None) -> list[CostRow]:
    """Every run's spending per purpose, oldest run first; with ``prices``, its dollars."""
    if not con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'llm_costs' AND NOT internal").fetchone()[
        0
    ]:
        raise AutointerpError(
            "The database has no llm_costs view: it was written by an older autointerp.",
            "a database migrated to this version.",
            'open it once for writing, e.g. autointerp sql --write --db FILE "CHECKPOINT".',
        )
    rows = [CostRow(*r) for r in con.execute(COSTS).fetchall()]
    if prices is not None:
        for row in rows:
            row.dollars = prices.dollars(row.prompt_tokens, row.cached_tokens, row.completion_tokens)
    return rows


def strategy_totals(rows: list[CostRow]) -> list[CostRow]:
    """One row per explain strategy and stage, summed over its runs and purposes; ``latents`` is the
    largest latent count of a purpose (a latent's explain and refine calls are one latent)."""
    totals: dict[str, CostRow] = {}
    for row in rows:
        t = totals.get(row.strategy)
        if t is None:
            t = totals[row.strategy] = CostRow(
                "*", row.stage, row.strategy, "*", row.model, 0, 0, 0, 0, 0, 0, 0, None if row.dollars is None else 0.0
            )
        t.latents = max(t.latents, row.latents)
        for key in ("calls", "failed_calls", "prompt_tokens", "completion_tokens", "cached_tokens"):
            setattr(t, key, getattr(t, key) + getattr(row, key))
        t.cached_tokens_estimated += row.cached_tokens_estimated
        if row.model != t.model:
            t.model = "several"
        if row.dollars is not None:
            t.dollars = (t.dollars or 0.0) + row.dollars
    return list(totals.values())


def _cell(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def render_costs(rows: list[CostRow], prices: Prices | None) -> str:
    """The per-run table and the per-strategy totals as text; '~' marks cached tokens that are partly estimated."""
    if not rows:
        return "no LLM calls logged yet."
    header = ["run", "strategy", "purpose", "latents", "calls", "calls/latent", "prompt/latent"]
    header += ["completion/latent", "cached/latent"] + (["dollars", "dollars/latent"] if prices else [])

    def line(row: CostRow, run: str) -> list[str]:
        cached = ("~" if row.estimated else "") + _cell(row.per_latent(row.cached_tokens))
        cells = [run, row.strategy, row.purpose, str(row.latents), f"{row.calls:,}", _cell(row.per_latent(row.calls))]
        cells += [_cell(row.per_latent(row.prompt_tokens)), _cell(row.per_latent(row.completion_tokens)), cached]
        if prices:
            cells += [f"{row.dollars or 0.0:.4f}", f"{row.per_latent(row.dollars or 0.0):.6f}"]
        return cells

    body = [line(r, r.run_id) for r in rows]
    totals = [line(t, "all runs") for t in strategy_totals(rows)]
    widths = [max(len(c) for c in col) for col in zip(header, *body, *totals, strict=True)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(c) for c in body]
    out += [fmt(["-" * w for w in widths])] + [fmt(c) for c in totals]
    if any(r.estimated for r in rows):
        out.append(
            "~ cached tokens partly estimated: the backend reported none, so the prompt prefix shared with the "
            "latent's earlier calls in the run stands in (what a prefix cache could serve)."
        )
    if prices:
        out.append(
            f"dollars at {prices.prompt:g} (prompt), {prices.cached_price:g} (cached prompt) and "
            f"{prices.completion:g} (completion) per million tokens."
        )
    return "\n".join(out)


def strategy_lines(rows: list[CostRow]) -> list[str]:
    """One sentence per explain strategy, for the demo's summary."""
    out = []
    for t in strategy_totals(rows):
        if t.stage != "explain":
            continue
        mark = " (partly estimated)" if t.estimated else ""
        out.append(
            f"Explain strategy {t.strategy}: {t.per_latent(t.calls):.1f} calls, "
            f"{t.per_latent(t.prompt_tokens):,.0f} prompt tokens ({t.per_latent(t.cached_tokens):,.0f} cached{mark}) "
            f"and {t.per_latent(t.completion_tokens):,.0f} completion tokens per latent over {t.latents} latents."
        )
    return out
