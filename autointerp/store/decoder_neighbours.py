"""The stored decoder neighbours (table ``decoder_neighbours``, public view ``similar_latents``): write one
collect's rows, and tell whether the current collect has any.

Readers go through the view, so they see the current collect only and answer "nothing" on a database
written before the table existed (read-only, not migrated).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

#: Neighbours kept per latent unless told otherwise.
DEFAULT_K = 10
COLUMNS = ("latent", "rank", "neighbour", "decoder_cos")


def write_decoder_neighbours(con: duckdb.DuckDBPyConnection, run_id: str, rows: pa.Table) -> int:
    """Replace the stored neighbours of collect ``run_id`` by ``rows`` (a table with the columns of
    ``COLUMNS``) in one transaction. Returns the number of rows written."""
    missing = set(COLUMNS) - set(rows.column_names)
    if missing:
        raise ValueError(f"decoder neighbour rows lack the columns {sorted(missing)}")
    con.execute("BEGIN TRANSACTION")
    registered = False
    try:
        con.execute("DELETE FROM decoder_neighbours WHERE run_id = ?", [run_id])
        con.register("_neighbour_rows", rows.select(list(COLUMNS)))
        registered = True
        names = ", ".join(COLUMNS)
        con.execute(
            f"INSERT INTO decoder_neighbours (run_id, {names}) SELECT ?, {names} FROM _neighbour_rows", [run_id]
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        if registered:
            con.unregister("_neighbour_rows")
    return rows.num_rows


def has_decoder_neighbours(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the current collect has stored decoder neighbours."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'similar_latents'"
    ).fetchone()[0]
    return (
        bool(exists) and con.execute("SELECT count(*) > 0 FROM (SELECT 1 FROM similar_latents LIMIT 1)").fetchone()[0]
    )
