"""The stored logit lens (table ``logit_lens``, public view ``latent_logits``): write one collect's rows,
read a latent's promoted or suppressed tokens, or the note saying why it has none.

The readers go through the view, so they see the current collect's lens only, and answer "nothing"
(an empty list, None) on a database written before the lens existed, read-only and not migrated.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import pyarrow as pa

#: Tokens kept per latent and sign unless told otherwise (Arad et al.'s --logit_lens_top_k).
DEFAULT_K = 20
#: The two signs of a ranking row, in the order they are stored.
SIGNS = ("promoted", "suppressed")
COLUMNS = ("latent", "sign", "rank", "token_id", "token", "value", "note")


def write_logit_lens(con: duckdb.DuckDBPyConnection, run_id: str, rows: pa.Table) -> int:
    """Replace the stored lens of collect ``run_id`` by ``rows`` (a table with the columns of ``COLUMNS``)
    in one transaction. Returns the number of rows written."""
    missing = set(COLUMNS) - set(rows.column_names)
    if missing:
        raise ValueError(f"logit lens rows lack the columns {sorted(missing)}")
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM logit_lens WHERE run_id = ?", [run_id])
        con.register("_logit_lens_rows", rows.select(list(COLUMNS)))
        names = ", ".join(COLUMNS)
        con.execute(f"INSERT INTO logit_lens (run_id, {names}) SELECT ?, {names} FROM _logit_lens_rows", [run_id])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        try:
            con.unregister("_logit_lens_rows")
        except Exception:  # noqa: BLE001 - never registered: the error above is the one to see
            pass
    return rows.num_rows


def has_logit_lens(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the current collect has a stored lens (any row, ranking or note)."""
    if not _view_exists(con):
        return False
    return con.execute("SELECT count(*) > 0 FROM (SELECT 1 FROM latent_logits LIMIT 1)").fetchone()[0]


def lens_tokens(
    con: duckdb.DuckDBPyConnection, latent: int, sign: str = "promoted", k: int = DEFAULT_K
) -> list[tuple[int, str, float]]:
    """The first ``k`` (token_id, token, value) of ``latent`` for ``sign`` ('promoted': largest logit
    first; 'suppressed': smallest first). Empty when the latent has a note instead, or no lens is stored."""
    return lens_tokens_of(con, [latent], sign, k).get(int(latent), [])


def lens_tokens_of(
    con: duckdb.DuckDBPyConnection, latents: Iterable[int], sign: str = "promoted", k: int = DEFAULT_K
) -> dict[int, list[tuple[int, str, float]]]:
    """``lens_tokens`` of several latents at once: latent -> its list (latents without rows are absent)."""
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {SIGNS}, not {sign!r}")
    latents = [int(x) for x in latents]
    if not latents or not _view_exists(con):
        return {}
    rows = con.execute(
        "SELECT latent, token_id, token, value FROM latent_logits "
        "WHERE sign = ? AND rank < ? AND latent IN (SELECT unnest(?)) ORDER BY latent, rank",
        [sign, int(k), latents],
    ).fetchall()
    out: dict[int, list[tuple[int, str, float]]] = {}
    for latent, token_id, token, value in rows:
        out.setdefault(latent, []).append((token_id, token, value))
    return out


def lens_note(con: duckdb.DuckDBPyConnection, latent: int) -> str | None:
    """Why the lens does not apply to ``latent`` (None when it has a ranking, or no lens is stored)."""
    if not _view_exists(con):
        return None
    row = con.execute(
        "SELECT note FROM latent_logits WHERE latent = ? AND note IS NOT NULL LIMIT 1", [int(latent)]
    ).fetchone()
    return row[0] if row else None


def _view_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT count(*) > 0 FROM duckdb_views() WHERE view_name = 'latent_logits'").fetchone()[0]
