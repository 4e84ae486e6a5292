"""The latents of a compared SAE matched to the browsed one, read from a comparison file.

``autointerp compare --db A --db B --out M.duckdb`` writes ``compare_sources`` (side 'a'|'b' and each
database's path) and ``latent_matches`` (one row per one-to-one matched pair: latent_a, latent_b,
decoder_cos, activation_corr, explanation_sim). Given ``--matches M.duckdb``, the browser attaches M and
the other side's database read-only beside the browsed one, and a latent's page shows its match in the
other SAE with that latent's latest explanation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ..errors import AutointerpError

#: Catalog names of the comparison file and of the other side's database on the browser's connection.
MATCHES = "cmp"
OTHER = "other"
REQUIRED = {
    "compare_sources": ("side", "path"),
    "latent_matches": ("latent_a", "latent_b", "decoder_cos", "activation_corr", "explanation_sim"),
}


@dataclass(frozen=True)
class Comparison:
    """Which side of the comparison file the browsed database is, and the other side's database."""

    side: str  # 'a' or 'b'
    other_path: str
    matches_path: str

    @property
    def columns(self) -> tuple[str, str]:
        """(the browsed side's latent column, the other side's) in latent_matches."""
        return ("latent_a", "latent_b") if self.side == "a" else ("latent_b", "latent_a")


def _quoted(path: Path) -> str:
    return "'" + str(path.absolute()).replace("'", "''") + "'"


def attach_comparison(con: duckdb.DuckDBPyConnection, db: Path, matches: str | Path) -> Comparison:
    """Attach the comparison file ``matches`` and the database it compares ``db`` with, both read-only, to
    ``con`` (before it is sealed). An AutointerpError says what is wrong with the file."""
    path = Path(matches)
    if not path.is_file():
        raise AutointerpError(
            f"No comparison file at {matches}.",
            "a file written by `autointerp compare --db A --db B --out M.duckdb`.",
            "check the --matches path, or run `autointerp compare` first.",
        )
    try:
        con.execute(f"ATTACH {_quoted(path)} AS {MATCHES} (READ_ONLY)")
    except duckdb.Error as exc:
        raise AutointerpError(
            f"Cannot open the comparison file {matches} read-only: {exc}",
            "a DuckDB file written by `autointerp compare`.",
        ) from exc
    found: dict[str, set[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = ?", [MATCHES]
    ).fetchall():
        found.setdefault(table, set()).add(column)
    missing = [f"{t}.{c}" for t, cols in REQUIRED.items() for c in cols if c not in found.get(t, ())]
    if missing:
        raise AutointerpError(
            f"{matches} is not a comparison file: it lacks {', '.join(missing)}.",
            "a file written by `autointerp compare --db A --db B --out M.duckdb`.",
        )
    sources = dict(con.execute(f"SELECT side, path FROM {MATCHES}.main.compare_sources").fetchall())
    side = next((s for s in ("a", "b") if s in sources and _same_file(sources[s], db, path)), None)
    if side is None:
        raise AutointerpError(
            f"{matches} compares {sources.get('a')} with {sources.get('b')}; the browsed database {db} is neither.",
            "the comparison file of a comparison that includes the browsed database.",
            "browse one of the compared databases, or compare this one: autointerp compare --db A --db B --out M",
        )
    other = _located(sources["b" if side == "a" else "a"], path)
    if other is None or not other.is_file():
        raise AutointerpError(
            f"The database {matches} compares with, {sources['b' if side == 'a' else 'a']}, is not there.",
            "both compared databases at the paths the comparison file holds (or beside it).",
            "put the database back at that path, or compare again.",
        )
    try:
        con.execute(f"ATTACH {_quoted(other)} AS {OTHER} (READ_ONLY)")
    except duckdb.Error as exc:
        raise AutointerpError(
            f"Cannot open the compared database {other} read-only: {exc}",
            "a database no process is writing to.",
        ) from exc
    return Comparison(side, str(other), str(path))


def _located(stored: str, matches: Path) -> Path | None:
    """The stored path as given (absolute, or relative to the working folder), else beside the file."""
    for candidate in (Path(stored), matches.parent / stored, matches.parent / Path(stored).name):
        if candidate.is_file():
            return candidate
    return None


def _same_file(stored: str, db: Path, matches: Path) -> bool:
    found = _located(stored, matches)
    if found is None:
        return False
    try:
        return os.path.samefile(found, db)
    except OSError:
        return False


def matched_latents(cur, ids: list[int], comparison: Comparison) -> dict[int, list[dict]]:
    """latent -> its matches in the other SAE (normally one), with that latent's latest explanation."""
    ours, theirs = comparison.columns
    batch = ", ".join(str(int(i)) for i in ids) or "NULL"  # only ints are inlined
    rows = cur.execute(f"""
        WITH m AS (
            SELECT {ours} AS latent, {theirs} AS other, decoder_cos, activation_corr, explanation_sim
            FROM {MATCHES}.main.latent_matches WHERE {ours} IS NOT NULL AND {theirs} IS NOT NULL),
        expl AS (
            SELECT latent, explanation FROM {OTHER}.main.explanations
            WHERE status = 'explained' AND explanation IS NOT NULL
              AND latent IN (SELECT other FROM m WHERE latent IN ({batch}))
            QUALIFY row_number() OVER (PARTITION BY latent ORDER BY created_at DESC, config_hash DESC) = 1)
        SELECT m.latent, m.other, m.decoder_cos, m.activation_corr, m.explanation_sim, x.explanation
        FROM m LEFT JOIN expl x ON x.latent = m.other
        WHERE m.latent IN ({batch})
        ORDER BY m.latent, m.decoder_cos DESC NULLS LAST, m.other""").fetchall()
    found: dict[int, list[dict]] = {}
    for latent, other, dec, corr, sim, text in rows:
        found.setdefault(latent, []).append(
            {"other": other, "decoder_cos": dec, "activation_corr": corr, "explanation_sim": sim, "explanation": text}
        )
    return found
