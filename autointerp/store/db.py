"""Open an autointerp DuckDB database and bring its schema up to date.

The schema is a sequence of numbered SQL files in ``migrations/``; each is applied once, in order, in
its own transaction, and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import duckdb

from ..errors import AutointerpError


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration, in order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def connect(path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Connect to the database at ``path`` (created if missing unless read-only) and migrate it."""
    path = Path(path)
    if read_only and not path.exists():
        raise AutointerpError(f"No database at {path}.", "a file written by `autointerp collect`.")
    if path.parent and not path.parent.exists():
        raise AutointerpError(f"The folder {path.parent} does not exist.", fix="create it or pass another --db path.")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise AutointerpError(
                f"The database {path} is locked by another process: {exc}",
                "a database no other process has open for writing.",
                "wait for that process to finish (or stop it), then run again.",
            ) from exc
        raise AutointerpError(
            f"Cannot open {path} as a DuckDB database: {exc}", "a DuckDB file written by autointerp, or a new path."
        ) from exc
    except duckdb.Error as exc:
        raise AutointerpError(
            f"Cannot open {path} as a DuckDB database: {exc}", "a DuckDB file written by autointerp, or a new path."
        ) from exc
    if not read_only:
        migrate(con)
    return con


def seal_read_only(con: duckdb.DuckDBPyConnection) -> None:
    """Forbid the connection every file outside the databases it already has attached, for good.

    A read-only open protects only its own file; ``COPY ... TO``, ``ATTACH ... (READ_WRITE)`` (also of a
    hard link to the same file) and ``INSTALL`` would still reach the file system. With external access
    off and the configuration locked, no statement can turn it back on.
    """
    con.execute("SET enable_progress_bar = false")  # it would print into query output; locked from here on
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchone()[0]
    if not exists:
        return 0
    return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    current = schema_version(con)
    known = migrations()
    if known and current > known[-1][0]:
        raise AutointerpError(
            f"The database has schema version {current}, newer than this autointerp ({known[-1][0]}).",
            fix="upgrade autointerp.",
        )
    for version, name, sql in known:
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
