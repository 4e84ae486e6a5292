"""Every public view of a database as a Parquet file, for pandas, polars, Spark or another DuckDB.

The public interface is the database's views plus the ``llm_calls`` and ``runs`` tables
(docs/schema.md); internal tables are not exported. DuckDB's ``COPY`` streams each view to disk, so
memory does not grow with the database.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import parse_latent_ranges
from ..errors import AutointerpError
from ..redact import redact_sql
from ..store.db import connect
from ..store.summary import use_live_if_stale
from .files import partial_name, refuse_existing

PUBLIC_TABLES = (
    "llm_calls",
    "runs",
    "planted_latents",
    "token_change",
    "explanation_embeddings",
    "explanation_candidates",
)
#: Text columns that may hold credentials written before redaction existed; exported redacted.
REDACTED = {"llm_calls": ("error", "response"), "runs": ("config", "error")}


@dataclass
class ParquetExport:
    files: dict[str, Path]
    rows: dict[str, int]


def public_relations(con) -> list[str]:
    """The views of the main schema and the public tables, in a stable order."""
    rows = con.execute(
        "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_catalog = current_database() ORDER BY table_name"
    ).fetchall()
    return [name for name, kind in rows if kind == "VIEW" or name in PUBLIC_TABLES]


def latent_filter(spec: str) -> str:
    """SQL condition on ``latent`` for ``--latents`` ranges (the ranges are parsed integers)."""
    ranges = parse_latent_ranges(spec)
    return " OR ".join(f"latent BETWEEN {lo} AND {hi}" for lo, hi in ranges)


def _select_all(name: str, columns: list[str]) -> str:
    redacted = [c for c in REDACTED.get(name, ()) if c in columns]
    if not redacted:
        return f'SELECT * FROM "{name}"'
    replace = ", ".join(f'{redact_sql(chr(34) + c + chr(34))} AS "{c}"' for c in redacted)
    return f'SELECT * REPLACE ({replace}) FROM "{name}"'


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def export_parquet(db, out, latents: str = "", overwrite: bool = False) -> ParquetExport:
    """Write ``<out>/<relation>.parquet`` for every public relation; with ``latents``, only those
    latents' rows of the relations that have a ``latent`` column."""
    out = Path(out)
    condition = latent_filter(latents) if latents else ""
    con = connect(db, read_only=True)
    try:
        use_live_if_stale(con)  # never export a stale stored summary
        names = [n for n in public_relations(con) if n != "latent_summary_live"]  # same rows as latent_summary
        if not names:
            raise AutointerpError(f"{db} holds none of autointerp's views.", "a database written by autointerp.")
        targets = {name: out / f"{name}.parquet" for name in names}
        refuse_existing(list(targets.values()), overwrite)
        out.mkdir(parents=True, exist_ok=True)
        rows, written = {}, []
        try:  # every file is written under a temporary name first: all or none are renamed
            for name, target in targets.items():
                columns = [r[0] for r in con.execute(f'DESCRIBE "{name}"').fetchall()]
                where = f" WHERE {condition}" if condition and "latent" in columns else ""
                temp = partial_name(target)
                written.append(temp)
                select = _select_all(name, columns)
                con.execute(f"COPY ({select}{where}) TO {_quote(temp)} (FORMAT parquet, COMPRESSION zstd)")
                rows[name] = con.execute(f"SELECT count(*) FROM read_parquet({_quote(temp)})").fetchone()[0]
            for target in targets.values():
                os.replace(partial_name(target), target)
        except BaseException:
            for temp in written:
                temp.unlink(missing_ok=True)
            raise
        return ParquetExport(targets, rows)
    finally:
        con.close()
