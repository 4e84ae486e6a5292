"""Explanation embeddings: every explained (or imported) explanation gets one sentence embedding per
encoder, stored in ``explanation_embeddings`` and computed incrementally.

``embed_explanations`` embeds only what is missing or stale (no row for the explanation and encoder,
or a row whose ``text_hash`` no longer matches the text), in chunks that each commit on their own, so
a run killed midway keeps every finished chunk and the next run carries on. ``explanation_vectors``
reads the latest explanation of each latent (the one ``latent_summary`` shows) with its vector.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import AutointerpError
from ..models.sentence_encoder import SentenceEncoder

log = logging.getLogger(__name__)
TABLE = "explanation_embeddings"
CHUNK = 4096  # explanations embedded and committed together

#: The latest explained explanation of each latent, as latent_summary picks it.
LATEST = """
    SELECT latent, arg_max(config_hash, created_at) AS config_hash
    FROM explanation_rows WHERE status = 'explained' AND explanation IS NOT NULL GROUP BY latent
"""


@dataclass
class EmbeddingReport:
    embedded: int
    """Explanations embedded by this call."""
    reused: int
    """Explanations that already had a current embedding."""
    encoder: str
    dim: int
    seconds: float


@dataclass
class ExplanationVectors:
    """The latest explanation of each latent and its embedding, rows in latent order."""

    latents: np.ndarray  # int64 [n]
    config_hashes: list[str]
    explanations: list[str]
    vectors: np.ndarray  # float32 [n, dim], L2-normalised
    encoder: str

    def __len__(self) -> int:
        return len(self.latents)


def stored_dim(con: duckdb.DuckDBPyConnection) -> int | None:
    """The width of the stored vectors (FLOAT[n]), or None when the table does not exist."""
    row = con.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_name = ? AND column_name = 'embedding'",
        [TABLE],
    ).fetchone()
    if row is None:
        return None
    return int(row[0].rsplit("[", 1)[1].rstrip("]"))


def _ensure_width(con: duckdb.DuckDBPyConnection, dim: int) -> None:
    """Recreate the (derived) table with FLOAT[dim] when the encoder's width differs from the stored one."""
    current = stored_dim(con)
    if current is None:
        raise AutointerpError(
            "This database has no explanation_embeddings table.",
            "a database at schema version 15 or later.",
            "open it writable once (any autointerp stage, or open_db(path, read_only=False)) to migrate it.",
        )
    if current == dim:
        return
    log.warning(
        "explanation embeddings are %d-wide; the encoder gives %d: embedding every explanation again", current, dim
    )
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DROP TABLE {TABLE}")
        con.execute(
            f"CREATE TABLE {TABLE} (latent INTEGER NOT NULL, config_hash VARCHAR NOT NULL, encoder VARCHAR NOT NULL, "
            f"text_hash VARCHAR NOT NULL, embedding FLOAT[{int(dim)}] NOT NULL, created_at TIMESTAMP NOT NULL, "
            "PRIMARY KEY (latent, config_hash, encoder))"
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def pending(con: duckdb.DuckDBPyConnection, encoder: str, latest_only: bool = False) -> list[tuple[int, str, str]]:
    """(latent, config_hash, explanation) of explanations with no current embedding under ``encoder``;
    with ``latest_only``, only each latent's latest explanation."""
    only = f"JOIN ({LATEST}) l USING (latent, config_hash)" if latest_only else ""
    return con.execute(
        f"""
        SELECT x.latent, x.config_hash, x.explanation FROM explanation_rows x {only}
        LEFT JOIN {TABLE} e ON e.latent = x.latent AND e.config_hash = x.config_hash AND e.encoder = ?
        WHERE x.status = 'explained' AND x.explanation IS NOT NULL
          AND (e.latent IS NULL OR e.text_hash <> md5(x.explanation))
        ORDER BY x.latent, x.config_hash
        """,
        [encoder],
    ).fetchall()


def embed_explanations(
    con: duckdb.DuckDBPyConnection,
    encoder: SentenceEncoder | None = None,
    latest_only: bool = False,
    chunk: int = CHUNK,
    progress=None,
) -> EmbeddingReport:
    """Embed every explanation that has no current embedding under ``encoder`` (default: the packaged
    all-MiniLM-L6-v2) and store the vectors, one committed chunk at a time. ``con`` must be writable.
    ``progress``, when given, is called with (done, total) after each chunk."""
    start = time.perf_counter()
    encoder = encoder or SentenceEncoder()
    digest, dim = encoder.digest(), encoder.dim
    _ensure_width(con, dim)
    todo = pending(con, digest, latest_only)
    total = con.execute(
        "SELECT count(*) FROM explanation_rows WHERE status = 'explained' AND explanation IS NOT NULL"
    ).fetchone()[0]
    for begin in range(0, len(todo), chunk):
        part = todo[begin : begin + chunk]
        vectors = encoder.embed([text for _, _, text in part], cache=False).astype(np.float32)
        rows = pa.table(
            {
                "latent": pa.array([r[0] for r in part], pa.int32()),
                "config_hash": [r[1] for r in part],
                "explanation": [r[2] for r in part],
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
            }
        )
        con.execute("BEGIN TRANSACTION")
        try:
            con.register("_embedding_rows", rows)
            con.execute(
                f"DELETE FROM {TABLE} WHERE encoder = ? AND (latent, config_hash) IN "
                "(SELECT latent, config_hash FROM _embedding_rows)",
                [digest],
            )
            con.execute(
                f"INSERT INTO {TABLE} SELECT latent, config_hash, ?, md5(explanation), embedding, now()::TIMESTAMP "
                "FROM _embedding_rows",
                [digest],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.unregister("_embedding_rows")
        if progress is not None:
            progress(begin + len(part), len(todo))
    return EmbeddingReport(len(todo), total - len(todo), digest, dim, time.perf_counter() - start)


def explanation_vectors(con: duckdb.DuckDBPyConnection, encoder: str, latents=None) -> ExplanationVectors:
    """The latest explanation of each latent (of ``latents`` when given) that has a current embedding
    under the encoder digest ``encoder``, with its vector. A latent whose latest explanation is not yet
    embedded is left out: call ``embed_explanations`` first."""
    where = "WHERE x.latent IN (SELECT unnest(?))" if latents is not None else ""
    params = [encoder] + ([list(map(int, latents))] if latents is not None else [])
    with warnings.catch_warnings():  # DuckDB 2 warns of the copy an execute() result's Arrow table makes
        warnings.simplefilter("ignore", UserWarning)
        table = con.execute(
            f"""
        SELECT x.latent, x.config_hash, x.explanation, e.embedding
        FROM ({LATEST}) l JOIN explanation_rows x USING (latent, config_hash)
        JOIN {TABLE} e ON e.latent = x.latent AND e.config_hash = x.config_hash AND e.encoder = ?
             AND e.text_hash = md5(x.explanation)
        {where}
        ORDER BY x.latent
        """,
            params,
        ).to_arrow_table()
    dim = stored_dim(con) or 0
    column = table.column("embedding").combine_chunks()
    flat = column.values.to_numpy(zero_copy_only=False) if len(column) else np.empty(0, np.float32)
    return ExplanationVectors(
        latents=table.column("latent").to_numpy().astype(np.int64),
        config_hashes=table.column("config_hash").to_pylist(),
        explanations=table.column("explanation").to_pylist(),
        vectors=np.asarray(flat, np.float32).reshape(len(table), dim),
        encoder=encoder,
    )
