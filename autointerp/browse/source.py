"""The database as the browser reads it: attached read-only to an in-memory DuckDB.

The file is never written (it is attached ``READ_ONLY``, so DuckDB refuses any write to it), and the
in-memory database beside it gives the server somewhere to keep its list table (see
``listing.materialize``). The browser never migrates: a database written by an older autointerp is
refused with the way to upgrade it, instead of failing later on a missing column.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from ..errors import AutointerpError
from ..store.db import connect, seal_read_only
from .matches import attach_comparison

#: The attached file's catalog name; each cursor starts in it (``USE``), so queries name views plainly.
CATALOG = "src"
#: view -> columns the browser reads from it.
REQUIRED = {
    "latents": ("latent", "hookpoint", "status", "frequency", "max_activation"),
    "examples": ("latent", "kind", "tokens", "activations"),
    "explanations": ("latent", "explanation", "status", "config_hash", "created_at"),
    "scores": ("latent", "explanation_id", "scorer", "score", "control"),
    "score_examples": ("latent", "context_id", "label", "prediction", "probability"),
    "interventions": ("latent", "prompt", "steered", "completion", "scale", "achieved_kl"),
    "latent_logits": ("latent", "sign", "rank", "token_id", "token", "value", "note"),
    "similar_latents": ("latent", "other", "rank", "relation", "decoder_cos", "explanation_sim", "other_explanation"),
}


class Database:
    """A read-only database file, with cursors for any number of threads. ``matches``: a comparison file
    (``autointerp compare``) whose other database is attached beside it, read-only too (``comparison``)."""

    def __init__(self, path: str | Path, matches: str | Path | None = None):
        self.path = Path(path)
        self.comparison = None
        check = connect(path, read_only=True)  # its errors say what is wrong with the file (missing, locked, ...)
        try:
            _check_views(check, self.path)
        finally:
            check.close()
        self.con = duckdb.connect(":memory:")
        try:
            self.con.execute(
                f"ATTACH '{str(self.path.absolute()).replace(chr(39), chr(39) * 2)}' AS {CATALOG} (READ_ONLY)"
            )
            if matches is not None:
                self.comparison = attach_comparison(self.con, self.path, matches)
            seal_read_only(self.con)
        except AutointerpError:
            self.con.close()
            raise
        except duckdb.Error as exc:
            self.con.close()
            raise AutointerpError(
                f"Cannot open {path} read-only: {exc}",
                "a database no process is writing to.",
                "wait for the writing stage to finish, then run again.",
            ) from exc
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for the calling thread, reading the file's views by their plain names."""
        with self._lock:
            cur = self.con.cursor()
        cur.execute(f"USE {CATALOG}")
        return cur

    def close(self) -> None:
        self.con.close()


def _check_views(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    found: dict[str, set[str]] = {}
    for view, column in con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall():
        found.setdefault(view, set()).add(column)
    missing = [f"{view}.{col}" for view, cols in REQUIRED.items() for col in cols if col not in found.get(view, ())]
    if missing:
        raise AutointerpError(
            f"{path} lacks what the browser reads ({', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}): it "
            "was written by an older autointerp, or is not an autointerp database.",
            "a database written by `autointerp collect` with this version.",
            f'upgrade its schema once with: python -c "from autointerp.store.db import connect; '
            f'connect({str(path)!r}).close()" (or run `autointerp collect --db PATH` to make one).',
        )
