"""Write the comparison file M.duckdb: ``compare_sources``, ``latent_matches`` and ``compare_summary``
(schema in docs/schema.md, "The comparison file").

The file is written under a temporary name beside ``out`` and renamed into place at the end, so a
failed or interrupted comparison never leaves a half-written M, nor loses an existing one.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import AutointerpError
from .summary import Measure

SCHEMA = """
CREATE TABLE compare_sources (side VARCHAR, path VARCHAR, collect_run VARCHAR, model VARCHAR, hookpoint VARCHAR,
    n_latents INTEGER, d_model INTEGER);
CREATE TABLE latent_matches (latent_a INTEGER, latent_b INTEGER, decoder_cos DOUBLE, activation_corr DOUBLE,
    explanation_sim DOUBLE);
CREATE TABLE compare_summary (measure VARCHAR, value DOUBLE, n BIGINT, baseline DOUBLE, note VARCHAR);
"""


def check_out(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an --out that is one of the inputs, lies in a missing folder, or exists without --overwrite."""
    if any(out.exists() and p.exists() and out.resolve() == p.resolve() for p in inputs):
        raise AutointerpError(
            f"--out {out} is one of the databases compared.",
            "a new file for the comparison.",
            "pass another --out path.",
        )
    if not out.parent.exists():
        raise AutointerpError(f"The folder {out.parent} does not exist.", fix="create it or pass another --out path.")
    if out.exists() and not overwrite:
        raise AutointerpError(
            f"{out} exists.",
            "a new path for the comparison file, or --overwrite to replace it.",
            "pass --overwrite, or another --out.",
        )


def _nullable(values: np.ndarray | None, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.float64())
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, mask=~np.isfinite(values))


def write_comparison(
    out: Path,
    sources: list[dict],
    latent_a: np.ndarray,
    latent_b: np.ndarray,
    decoder_cos: np.ndarray | None,
    activation_corr: np.ndarray | None,
    explanation_sim: np.ndarray | None,
    measures: list[Measure],
) -> None:
    """Write M at ``out`` (replacing it: the caller checked --overwrite)."""
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    n = len(latent_a)
    matches = pa.table(
        {
            "latent_a": pa.array(np.asarray(latent_a, dtype=np.int32)),
            "latent_b": pa.array(np.asarray(latent_b, dtype=np.int32)),
            "decoder_cos": _nullable(decoder_cos, n),
            "activation_corr": _nullable(activation_corr, n),
            "explanation_sim": _nullable(explanation_sim, n),
        }
    )
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute(SCHEMA)
            con.executemany(
                "INSERT INTO compare_sources VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    [s["side"], s["path"], s["collect_run"], s["model"], s["hookpoint"], s["n_latents"], s["d_model"]]
                    for s in sources
                ],
            )
            con.register("_matches", matches)
            con.execute("INSERT INTO latent_matches SELECT * FROM _matches ORDER BY latent_a")
            con.unregister("_matches")
            con.executemany(
                "INSERT INTO compare_summary VALUES (?, ?, ?, ?, ?)",
                [[m.measure, m.value, m.n, m.baseline, m.note] for m in measures],
            )
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
