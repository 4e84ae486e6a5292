"""Keep ``latent_summary`` (a stored copy of ``latent_summary_live``) current.

Computing the per-latent summary from the tables is a group-by over every score row: seconds at 1M
latents, far from the 200 ms an interactive filtered query should take. So migration 0005 (redefined by 0008)
stores it in ``latent_summary_rows`` and records in ``latent_summary_state`` what it was computed from (a
*fingerprint*: row counts and latest ``created_at`` of explanations and scores, and the collect runs).
Writers call :func:`refresh_latent_summary` after they write; a reader that finds the copy stale
(a run killed before its refresh, a hand-edited table) reads the live definition instead
(:func:`use_live_if_stale`), slow but never wrong.
"""

from __future__ import annotations

import logging

import duckdb

# The same query as the INSERT INTO latent_summary_state of migrations 0005, 0008 and 0014.
FINGERPRINT = """
SELECT (SELECT count(*) FROM explanation_rows), (SELECT max(created_at) FROM explanation_rows),
       (SELECT count(*) FROM score_rows), (SELECT max(created_at) FROM score_rows),
       (SELECT string_agg(run_id, ',' ORDER BY run_id) FROM collections)
"""
_STATE = "SELECT explanation_rows, explanations_at, score_rows, scores_at, collect_runs FROM main.latent_summary_state"


def has_summary(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database has migration 0005 (an older one opened read-only may not)."""
    return (
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND table_name = 'latent_summary_state' AND NOT temporary"
        ).fetchall()[0][0]
        > 0
    )


# Results are always fetched whole: DuckDB 2 refuses other work on a connection while a result is
# unfinished, and fetchone() leaves it so.


def _fingerprint(con) -> tuple:
    return con.execute(FINGERPRINT).fetchall()[0]


def _state(con) -> tuple | None:
    rows = con.execute(_STATE).fetchall()
    return rows[0] if rows else None


def is_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``latent_summary_rows`` was computed from the tables as they are now (a few ms)."""
    return _state(con) == _fingerprint(con)


def refresh_latent_summary(con: duckdb.DuckDBPyConnection, latents=None, in_transaction: bool = False) -> int:
    """Recompute the stored summary rows; returns how many latents were recomputed.

    ``latents=None`` recomputes every latent (seconds at 1M latents). A list recomputes those latents
    and also any latent with an explanation or score row written since the last refresh, so a run that
    crashed before refreshing is caught up by the next; it falls back to every latent when that cannot
    be told (rows were deleted, the collect changed, the copy was never computed). Call it with the
    latents a run wrote, once, after its last write. Runs in its own transaction, or, with
    ``in_transaction=True``, in the caller's open one (DuckDB aborts a transaction on a nested BEGIN, so
    the caller must say).
    """
    bar = con.execute("SELECT current_setting('enable_progress_bar')").fetchall()[0][0]
    con.execute("SET enable_progress_bar = false")  # DuckDB's own bar would print into the caller's output
    own = not in_transaction
    if own:
        con.execute("BEGIN TRANSACTION")
    try:
        n = _refresh(con, latents)
        con.execute("DELETE FROM latent_summary_state")
        con.execute(f"INSERT INTO latent_summary_state SELECT *, now() FROM ({FINGERPRINT})")
        if own:
            con.execute("COMMIT")
        return n
    except BaseException:
        if own:
            con.execute("ROLLBACK")
        raise
    finally:
        try:
            con.execute(f"SET enable_progress_bar = {'true' if bar else 'false'}")
        except duckdb.Error:  # the caller's failed transaction refuses it; its own error is the one to see
            pass


def _refresh(con, latents) -> int:
    state, now = _state(con), _fingerprint(con)
    everything = latents is None or state is None or state[4] != now[4] or now[0] < state[0] or now[2] < state[2]
    if everything:
        con.execute("DELETE FROM latent_summary_rows")
        con.execute("INSERT INTO latent_summary_rows SELECT * FROM latent_summary_live")
        return con.execute("SELECT count(*) FROM latent_summary_rows").fetchall()[0][0]
    # Rows written since the last refresh have a created_at at or after the latest one it saw.
    dirty = (
        con.execute(
            "SELECT list(DISTINCT latent) FROM (SELECT unnest(?::INTEGER[]) AS latent "
            "UNION ALL SELECT latent FROM explanation_rows WHERE ?::TIMESTAMP IS NULL OR created_at >= ? "
            "UNION ALL SELECT latent FROM score_rows WHERE ?::TIMESTAMP IS NULL OR created_at >= ?)",
            [[int(x) for x in latents], state[1], state[1], state[3], state[3]],
        ).fetchall()[0][0]
        or []
    )
    if dirty:
        con.execute("DELETE FROM latent_summary_rows WHERE latent IN (SELECT unnest(?::INTEGER[]))", [dirty])
        con.execute(
            "INSERT INTO latent_summary_rows SELECT * FROM latent_summary_live "
            "WHERE latent IN (SELECT unnest(?::INTEGER[]))",
            [dirty],
        )
    return len(dirty)


def refresh_summary_quietly(con: duckdb.DuckDBPyConnection) -> None:
    """After a stage's run, finished or not: bring the stored summary up to date. A failure here only
    leaves the copy stale (readers then use the live view), so it is logged, never raised over the
    run's own outcome."""
    try:
        if has_summary(con):
            refresh_latent_summary(con, [])
    except duckdb.Error as exc:
        logging.getLogger(__name__).warning("latent_summary not refreshed (%s); readers use the live view", exc)


def ensure_current(con: duckdb.DuckDBPyConnection) -> bool:
    """On a writable connection: refresh the summary if it is stale. Returns whether it refreshed."""
    if not has_summary(con) or is_current(con):
        return False
    refresh_latent_summary(con, latents=[])
    return True


def use_live_if_stale(con: duckdb.DuckDBPyConnection) -> bool:
    """On a read-only connection: if the stored summary is stale, shadow ``latent_summary`` with a
    temporary view of the live definition (correct, seconds at 1M latents). Returns whether it did."""
    if not has_summary(con) or is_current(con):
        return False
    con.execute("CREATE OR REPLACE TEMP VIEW latent_summary AS SELECT * FROM main.latent_summary_live")
    return True
