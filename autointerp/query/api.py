"""The Python API for reading a database: ``open_db(path)`` gives a :class:`Database`.

A thin layer over a DuckDB connection: it opens the file read-only unless asked otherwise, makes sure
``latent_summary`` answers from current data (see autointerp/store/summary.py), and turns DuckDB's
errors into :class:`AutointerpError` messages that say how to fix the query.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from ..errors import AutointerpError
from ..failures import explain_failure
from ..store import summary
from ..store.db import connect, migrations, seal_read_only

if TYPE_CHECKING:
    from ..similarity.search import SearchHit

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def open_db(path, read_only: bool = True) -> Database:
    """Open the autointerp database at ``path``; read-only unless ``read_only=False``.

    >>> with open_db("demo.duckdb") as db:
    ...     top = db.df("SELECT * FROM latent_summary ORDER BY detection_score DESC LIMIT 10")
    """
    return Database(path, read_only)


class Database:
    """An open database. ``con`` is the DuckDB connection for anything the helpers do not cover."""

    def __init__(self, path, read_only: bool = True):
        self.path = Path(path)
        self.read_only = read_only
        self._search_index = None  # loaded by the first search()
        if not self.path.is_file():
            raise AutointerpError(
                f"No database at {self.path}.",
                "a DuckDB file written by autointerp (`autointerp collect --db PATH` creates one).",
                "check the path.",
            )
        self.con = connect(self.path, read_only=read_only)  # a writable open also migrates the schema
        try:
            if read_only:
                # True when latent_summary is answered by its live definition (slow, but current).
                self.summary_is_live = summary.use_live_if_stale(self.con)
                seal_read_only(self.con)
            else:
                self.con.execute("SET enable_progress_bar = false")  # it would print into query output
                summary.ensure_current(self.con)
                self.summary_is_live = False
        except BaseException:
            self.con.close()
            raise

    def sql(self, query: str, params=None) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation for ``query`` (``?`` placeholders filled from ``params``)."""
        try:
            return self.con.sql(query, params=params)
        except duckdb.Error as exc:
            raise query_error(exc, self) from exc

    def relation(self, view_or_query: str, params=None) -> duckdb.DuckDBPyRelation:
        """A view or table given by its name, or the result of a query."""
        text = view_or_query.strip()
        if _NAME.fullmatch(text):
            if text not in self.names():
                raise AutointerpError(
                    f"No view or table named {text!r} in {self.path}.",
                    "one of: " + ", ".join(self.views()) + " (or a SELECT query).",
                    "check the name (docs/schema.md lists the views).",
                )
            text = f'SELECT * FROM "{text}"'
        return self.sql(text, params)

    def df(self, view_or_query: str, params=None):
        """A pandas DataFrame of a view (by name) or of a query."""
        rel = self.relation(view_or_query, params)
        try:
            return rel.df()
        except duckdb.Error as exc:
            raise query_error(exc, self) from exc

    def arrow(self, view_or_query: str, params=None):
        """A pyarrow Table of a view (by name) or of a query."""
        rel = self.relation(view_or_query, params)
        try:
            # DuckDB >= 1.4 names it to_arrow_table (its .arrow() became a batch reader).
            return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        except duckdb.Error as exc:
            raise query_error(exc, self) from exc

    def views(self) -> list[str]:
        """Names of the public views (docs/schema.md documents each)."""
        return [
            r[0]
            for r in self.con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' "
                "AND NOT temporary ORDER BY view_name"
            ).fetchall()
        ]

    def names(self) -> set[str]:
        """Every view and table name a query can use, the internal tables included."""
        return {
            r[0]
            for r in self.con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal "
                "UNION SELECT table_name FROM duckdb_tables() WHERE NOT internal"
            ).fetchall()
        }

    def schema_version(self) -> int:
        """The latest migration applied to the file (0 for a file autointerp never wrote)."""
        if not self._has_table("schema_migrations"):
            return 0
        return self.con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]

    def _has_table(self, name: str) -> bool:
        return (
            self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchall()[0][0] > 0
        )

    def search(self, text: str, k: int = 20, keyword: str | None = None) -> list[SearchHit]:
        """The ``k`` latents whose latest explanation is closest in meaning to ``text``, best first, as a
        list of ``autointerp.similarity.search.SearchHit`` (``pandas.DataFrame([h.as_dict() for h in hits])``
        makes a table of it). ``keyword`` ranks the explanations containing it first.

        Opened writable, the explanations that lack an embedding are embedded first (only those). Read-only
        (the default), the stored embeddings are used and a warning says how many explanations lack one
        (``autointerp search --db PATH --embed`` adds them). The query encoder and the vectors are loaded
        once per Database and reused.
        """
        from ..models.sentence_encoder import SentenceEncoder
        from ..similarity import search as meaning
        from ..similarity.embeddings import embed_explanations

        text, k = meaning.check_query(text), meaning.check_k(k)
        if self._search_index is None or not self.read_only:  # a writable file may have changed since
            if meaning.count_explained(self.con) == 0:
                raise meaning.no_explanations_error(str(self.path))
            encoder = self._search_index.encoder if self._search_index is not None else SentenceEncoder()
            if not self.read_only:
                embed_explanations(self.con, encoder, latest_only=True)
            self._search_index = meaning.SearchIndex.load(self.con, encoder)
        index = self._search_index
        if index.missing:
            warnings.warn(meaning.missing_note(index.missing, str(self.path)), stacklevel=2)
        return meaning.hits(self.con, index, index.query(text, k, keyword))

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def query_error(exc: duckdb.Error, db: Database) -> AutointerpError:
    """DuckDB's message, with the fix for the mistakes we can recognise."""
    message = str(exc).strip()
    failure = explain_failure(exc)
    if failure is not None:
        return failure
    if db.read_only and "read-only mode" in message:
        return AutointerpError(
            f"The database {db.path} is open read-only and the query writes to it: {message}",
            "a query that only reads (SELECT, DESCRIBE, SHOW, EXPLAIN, ...).",
            "to change the database, pass --write (CLI) or read_only=False (open_db).",
        )
    latest = migrations()[-1][0]
    version = db.schema_version()
    if isinstance(exc, duckdb.CatalogException) and version < latest:
        return AutointerpError(
            f"The query failed: {message}",
            f"a database with schema version {latest}; {db.path} has version {version}.",
            "open it once for writing to upgrade it (e.g. `autointerp sql --write --db "
            f'{db.path} "CHECKPOINT"`), then run the query again.',
        )
    return AutointerpError(
        f"The query failed: {message}",
        "a DuckDB SQL query over the views of docs/schema.md.",
        'correct the query (`autointerp sql "SHOW TABLES" --db PATH` lists the views).',
    )
