"""A collect shard's state on disk: one folder of Parquet files per shard, written atomically.

``shard-<first>-<last>/`` holds ``stats.parquet`` (one row per latent: counts, the compensated sum of
activations, the maximum, the histogram) and one Parquet file per candidate buffer (``top``,
``top_negative``, ``reservoir``, ``negatives``: one row per kept candidate with its key, sequence,
window start, value, source document, token ids and activations), plus ``manifest.json``. A shard is written into a
temporary folder and renamed into place, so a folder that exists is complete: a run that dies keeps its
finished shards and a rerun of the same command skips them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

MANIFEST = "manifest.json"


def shard_name(first: int, last: int) -> str:
    return f"shard-{first:010d}-{last:010d}"


def _matrix_column(matrix: np.ndarray) -> pa.FixedSizeListArray:
    rows, width = matrix.shape
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).reshape(-1)), width)


def _matrix(column: pa.ChunkedArray, dtype) -> np.ndarray:
    array = column.combine_chunks()
    width = array.type.list_size
    return np.array(array.flatten().to_numpy(zero_copy_only=False), dtype=dtype).reshape(-1, width)


def write_part(folder: Path, state: dict, manifest: dict) -> Path:
    """Write a sampler's ``state()`` and its manifest as ``folder`` (atomically)."""
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    stats = {k: v.cpu().numpy() for k, v in state["stats"].items()}
    pq.write_table(
        pa.table({k: (_matrix_column(v) if v.ndim == 2 else v) for k, v in stats.items()}), tmp / "stats.parquet"
    )
    for name, rows in state["buffers"].items():
        rows = {k: v.cpu().numpy() for k, v in rows.items()}
        pq.write_table(
            pa.table({k: (_matrix_column(v) if v.ndim == 2 else v) for k, v in rows.items()}), tmp / f"{name}.parquet"
        )
    meta = {
        **manifest,
        "n_tokens": int(state["n_tokens"]),
        "n_sequences": int(state["n_sequences"]),
        "buffers": sorted(state["buffers"]),
    }
    (tmp / MANIFEST).write_text(json.dumps(meta, sort_keys=True))
    try:
        os.replace(tmp, folder)
    except OSError:  # the same shard was finished twice (a worker presumed dead finished it): keep one
        if not (folder / MANIFEST).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A Parquet file written by ``write_part`` as one tensor per column (matrices for list columns)."""
    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_fixed_size_list(column.type):
            out[name] = torch.from_numpy(_matrix(column, column.type.value_type.to_pandas_dtype()))
        else:
            out[name] = torch.from_numpy(np.array(column.to_numpy()))
    return out


def read_part(folder: Path) -> tuple[dict, dict]:
    """The state ``write_part`` stored (as torch tensors, for ``StreamingSampler.absorb``) and its
    manifest."""
    folder = Path(folder)
    meta = read_manifest(folder)
    if meta is None:
        raise FileNotFoundError(f"{folder} is not a finished shard (no {MANIFEST})")
    stats = _read_tensors(folder / "stats.parquet")
    buffers = {name: _read_tensors(folder / f"{name}.parquet") for name in meta["buffers"]}
    state = {"stats": stats, "n_tokens": meta["n_tokens"], "n_sequences": meta["n_sequences"], "buffers": buffers}
    return state, meta
