"""Write one collect run's results (contexts, examples, statistics) in a single transaction."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from ..store import runs
from ..store.summary import refresh_latent_summary
from .select import KINDS, SPLITS, Selection


def _list_column(matrix: np.ndarray) -> pa.ListArray:
    """A 2-D array as an Arrow list column (one list per row)."""
    rows, width = matrix.shape
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    flat = matrix.reshape(-1)
    values = pa.array(flat.tolist(), type=pa.string()) if flat.dtype == object else pa.array(flat)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pa.ListArray.from_arrays(offsets, values)


def planted_table(run_id: str, planted: list[dict], stats: dict[str, np.ndarray]) -> pa.Table:
    """The ``planted_latents`` rows: the ground truth, the calibration, and the density measured."""
    latents = np.array([row["latent"] for row in planted], dtype=np.int64)
    columns = {key: [row[key] for row in planted] for key in planted[0]}
    return pa.table(
        {
            "run_id": pa.array([run_id] * len(planted)),
            **columns,
            "latent": latents.astype(np.int32),
            "achieved_density": stats["frequency"][latents].astype(np.float64),
        }
    )


def collect_run_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT run_id FROM runs WHERE stage = 'collect'").fetchall()]


def delete_collect_results(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> None:
    for table in (
        "logit_lens",
        "decoder_neighbours",
        "planted_latents",
        "latent_examples",
        "latent_stats",
        "contexts",
        "collections",
        "runs",
    ):
        con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest(?))", [run_ids])


def _hard_columns(selection: Selection) -> dict[str, pa.Array]:
    """``similarity`` and ``hard_by`` of every example: set on hard negatives only, NULL elsewhere."""
    n = len(selection.latent)
    if selection.similarity is None:
        return {"similarity": pa.nulls(n, pa.float64()), "hard_by": pa.nulls(n, pa.string())}
    similarity = selection.similarity.astype(np.float64)
    return {
        "similarity": pa.array(similarity, mask=np.isnan(similarity)),
        "hard_by": pa.array(selection.hard_by.tolist(), type=pa.string()),
    }


def write_collection(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    replaces: list[str],
    collection: dict,
    selection: Selection,
    stats: dict[str, np.ndarray],
    token_strings,
    summary: dict,
    planted: list[dict] | None = None,
) -> None:
    """Replace the results of the runs in ``replaces`` by this run's, atomically.

    ``token_strings(ids)`` maps an array of token ids to their strings.
    """
    seq_len = collection["seq_len"]
    context_ids = selection.sequence.astype(np.int64) * seq_len + selection.start.astype(np.int64)
    unique_ids, first = np.unique(context_ids, return_index=True)
    ctx_tokens = selection.tokens[first].astype(np.int32)
    vocab_ids, inverse = np.unique(ctx_tokens, return_inverse=True)
    strings = np.asarray(token_strings(vocab_ids), dtype=object)[inverse.reshape(ctx_tokens.shape)]
    contexts = pa.table(
        {
            "context_id": unique_ids,
            "run_id": pa.array([run_id] * len(unique_ids)),
            "sequence_id": selection.sequence[first].astype(np.int64),
            "start_pos": selection.start[first].astype(np.int32),
            "token_ids": _list_column(ctx_tokens),
            "tokens": _list_column(strings),
        }
    )
    examples = pa.table(
        {
            "run_id": pa.array([run_id] * len(context_ids)),
            "latent": selection.latent.astype(np.int32),
            "split": pa.array(np.asarray(SPLITS, dtype=object)[selection.split].astype(str)),
            "kind": pa.array(np.asarray(KINDS, dtype=object)[selection.kind].astype(str)),
            "quantile": pa.array(selection.quantile.astype(np.int16), mask=selection.quantile < 0),
            "rank": selection.rank.astype(np.int32),
            "context_id": context_ids,
            "activations": _list_column(selection.activations.astype(np.float32)),
            "max_activation": selection.max_activation.astype(np.float32),
            "document_id": selection.document.astype(np.int64),
            **_hard_columns(selection),
        }
    )
    n_latents = len(stats["n_firing"])
    latent_stats = pa.table(
        {
            "run_id": pa.array([run_id] * n_latents),
            "latent": np.arange(n_latents, dtype=np.int32),
            "hookpoint": pa.array([collection["hookpoint"]] * n_latents),
            "n_firing": stats["n_firing"],
            "n_tokens": np.full(n_latents, collection["n_tokens"], dtype=np.int64),
            "frequency": stats["frequency"],
            "max_activation": stats["max_activation"].astype(np.float32),
            "mean_activation": pa.array(stats["mean_activation"].astype(np.float32), mask=stats["n_firing"] == 0),
            "n_active_contexts": stats["n_active_contexts"],
            "histogram": _list_column(stats["histogram"]),
            "quantile_edges": _list_column(selection.quantile_edges.astype(np.float32)),
            "status": pa.array(stats["status"]),
            "reason": pa.array(stats["reason"]),
        }
    )
    con.execute("BEGIN TRANSACTION")
    try:
        delete_collect_results(con, [r for r in replaces if r != run_id])
        con.execute(
            "INSERT INTO collections SELECT * FROM (SELECT ? AS run_id, ? AS model, ? AS hookpoint, "
            "? AS sae, ? AS dataset, ? AS n_latents, ? AS n_sequences, ? AS n_tokens, ? AS seq_len, "
            "? AS window_len, ? AS histogram_edges)",
            [
                run_id,
                collection["model"],
                collection["hookpoint"],
                collection["sae"],
                collection["dataset"],
                n_latents,
                collection["n_sequences"],
                collection["n_tokens"],
                seq_len,
                collection["window"],
                collection["histogram_edges"],
            ],
        )
        con.register("_contexts", contexts)
        con.execute("INSERT INTO contexts SELECT * FROM _contexts")
        con.register("_examples", examples)
        con.execute("INSERT INTO latent_examples BY NAME SELECT * FROM _examples")
        con.register("_stats", latent_stats)
        con.execute("INSERT INTO latent_stats SELECT * FROM _stats")
        if planted:
            con.register("_planted", planted_table(run_id, planted, stats))
            con.execute("INSERT INTO planted_latents BY NAME SELECT * FROM _planted")
        refresh_latent_summary(con, in_transaction=True)
        runs.complete_run(con, run_id, summary)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in ("_contexts", "_examples", "_stats", "_planted"):
            try:
                con.unregister(name)
            except Exception:
                pass
