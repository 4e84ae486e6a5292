"""The plan as a text table, and its dollars."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .plan import Plan

COLUMNS = (
    ("calls", "calls"),
    ("prompt_tokens", "prompt"),
    ("cached_tokens", "cacheable"),
    ("uncached_tokens", "uncached"),
    ("completion_budget", "completion budget"),
)


def dollars(plan: Plan, price_in: float | None, price_out: float | None, price_cached: float | None) -> dict | None:
    """Dollars of the plan at prices per million tokens (cached prompt tokens at ``price_cached``, else at
    ``price_in``; completions at their budget, an upper bound); None when no price is given."""
    if price_in is None and price_out is None and price_cached is None:
        return None
    total = plan.counts.total
    p_in, p_out = price_in or 0.0, price_out or 0.0
    p_cached = p_in if price_cached is None else price_cached
    parts = {
        "uncached_prompt": total.uncached_tokens * p_in / 1e6,
        "cached_prompt": total.cached_tokens * p_cached / 1e6,
        "completion_at_budget": total.completion_budget * p_out / 1e6,
    }
    out = {**parts, "total": sum(parts.values())}
    out["per_latent"] = out["total"] / plan.latents if plan.latents else 0.0
    out["prices_per_million"] = {"in": p_in, "cached": p_cached, "out": p_out}
    return out


def _table(rows: list[tuple[str, dict]]) -> list[str]:
    width = max(len(name) for name, _ in rows)
    head = f"{'':{width}}" + "".join(f"{title:>19}" for _, title in COLUMNS)
    lines = [head]
    for name, figures in rows:
        cells = []
        for key, _ in COLUMNS:
            value = figures[key]
            cells.append(
                f"{value:>19,.1f}" if isinstance(value, float) and not value.is_integer() else f"{value:>19,.0f}"
            )
        lines.append(f"{name:{width}}" + "".join(cells))
    return lines


def render_table(out: dict) -> str:
    """The plan's JSON object (``command.run``) as text."""
    lines = [
        f"plan for {out['db']}: {', '.join(out['stages'])} over {out['latents']:,} latents "
        f"(tokens counted with {out['tokenizer']})",
        "",
    ]
    rows = [(purpose, figures) for purpose, figures in out["by_purpose"].items()]
    rows += [("total", out["total"]), ("per latent (mean)", out["per_latent_mean"])]
    lines += _table(rows)
    if "per_latent" in out:
        lines += ["", "per latent:"] + _table([(f"latent {k}", v) for k, v in out["per_latent"].items()])
    if "dollars" in out:
        d = out["dollars"]
        lines += [
            "",
            f"dollars: {d['total']:,.4f} in all, {d['per_latent']:,.5f} per latent (uncached prompt "
            f"{d['uncached_prompt']:,.4f} + cached prompt {d['cached_prompt']:,.4f} + completion at its budget, "
            f"an upper bound, {d['completion_at_budget']:,.4f})",
        ]
    if "calibration" in out:
        c = out["calibration"]
        lines += [
            "",
            f"calibration on the {c['backend']} backend ({len(c['measurements'])} requests, each sent twice):",
        ]
        for m in c["measurements"]:
            decode = f"{m['decode_rate']:,.1f}" if m["decode_rate"] else "-"
            lines.append(
                f"  {m['purpose']:<12} {m['prompt_tokens']:>7,} prompt tokens at {m['prefill_rate']:,.0f}/s, "
                f"{m['completion_tokens']:>5,} completion tokens at {decode}/s"
            )
        lines.append(
            f"expected wall time: {_duration(c['seconds'])} (interval {_duration(c['low_s'])} to "
            f"{_duration(c['high_s'])}: the least and most of the estimates each request's rates give alone) for "
            f"{c['prefill_tokens']:,} prompt tokens to prefill and {c['completion_tokens']:,.0f} expected completion "
            "tokens, one request at a time (an engine that batches concurrent requests is faster)"
        )
    lines += [""] + [f"note: {n}" for n in out["notes"]]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
