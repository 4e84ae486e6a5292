"""The coverage section printed at the end of ``collect``, ``explain``, ``score`` and the demo: one line
per decade of firing frequency that holds latents, from the ``coverage`` view (docs/schema.md)."""

from __future__ import annotations

import io
from pathlib import Path

from ..store.coverage import DecadeCoverage, has_coverage, read_coverage
from ..store.db import connect
from .render import write_table

INTRO = (
    "Coverage per decade of firing frequency (SELECT * FROM coverage): explained = has an explanation;\n"
    "a scorer's column = scored with the latent's own explanation; skipped = not ok, by reason."
)


def render_coverage(decades: list[DecadeCoverage]) -> str:
    """The section as text: a header line and a table with a total row; empty without latents."""
    if not decades:
        return ""
    scorers = sorted({s for d in decades for s in d.scored})
    columns = ["frequency", "latents", "live", "ok", "explained", *scorers, "skipped"]
    types = ["VARCHAR"] + ["BIGINT"] * (4 + len(scorers)) + ["VARCHAR"]
    total = DecadeCoverage("all")
    for d in decades:
        total.latents += d.latents
        total.live += d.live
        total.ok += d.ok
        total.explained += d.explained
        for scorer, n in d.scored.items():
            total.scored[scorer] = total.scored.get(scorer, 0) + n
        for reason, n in d.skipped.items():
            total.skipped[reason] = total.skipped.get(reason, 0) + n
    rows = [
        (d.decade, d.latents, d.live, d.ok, d.explained, *(d.scored.get(s, 0) for s in scorers), _skipped(d))
        for d in [*decades, total]
    ]
    out = io.StringIO()
    write_table(out, columns, types, iter(rows), max_width=0, max_rows=0, footer=False)
    return INTRO + "\n" + out.getvalue().rstrip("\n")


def _skipped(d: DecadeCoverage) -> str:
    """'12 too_few_activating, 3 too_few_negatives': each reason class with its count, most first."""
    by_class: dict[str, int] = {}
    for (status, reason_class), n in d.skipped.items():
        name = reason_class or status
        by_class[name] = by_class.get(name, 0) + n
    return ", ".join(f"{n} {name}" for name, n in sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def coverage_section(db: str | Path) -> str:
    """The section for the database at ``db`` (opened read-only); empty when it has no coverage view."""
    con = connect(db, read_only=True)
    try:
        return render_coverage(read_coverage(con)) if has_coverage(con) else ""
    finally:
        con.close()
