"""Each latent's nearest latents by decoder cosine, computed from a collect's dictionary and stored.

Near-duplicate latents (two directions for one feature) and latents split into narrower ones show up
as pairs of close decoder directions; the view ``similar_latents`` sets these pairs beside their
explanations' similarity. The directions go through ``models.neighbours.nearest_by_cosine`` in chunks,
so the latents x latents matrix is never built. A signed dictionary (latents can be negative) ranks by
|cosine|: a flipped direction is the same feature. Planted latents have no direction and get no rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import AutointerpError
from ..models.dictionaries.planted import planted_part
from ..models.neighbours import nearest_by_cosine
from ..store.decoder_neighbours import DEFAULT_K, write_decoder_neighbours

#: Latents per chunk: peak memory is DEFAULT_CHUNK x n_latents cosines.
DEFAULT_CHUNK = 4096


@dataclass
class DecoderNeighbours:
    """Computed neighbours: ``rows`` (columns of ``store.decoder_neighbours.COLUMNS``), how many latents
    were ranked, and why none were when that is so."""

    rows: pa.Table
    ranked: int
    note: str | None = None

    def summary(self, seconds: float) -> dict:
        """Counts for the stage's output and the run summary."""
        return {"ranked": self.ranked, "rows": self.rows.num_rows, "note": self.note, "seconds": round(seconds, 2)}


def compute_decoder_neighbours(dictionary, k: int = DEFAULT_K, chunk_size: int = DEFAULT_CHUNK) -> DecoderNeighbours:
    """The ``k`` nearest other latents of every latent of ``dictionary`` with a decoder direction."""
    planted = planted_part(dictionary)
    n_base = planted[0] if planted else int(dictionary.d_sae)
    if n_base < 2:
        return DecoderNeighbours(
            _rows(np.empty((0, 0), np.int64), np.empty((0, 0), np.float32)), 0, "no latents to compare"
        )
    try:
        directions = dictionary.decoder_directions()
    except AutointerpError as exc:
        return DecoderNeighbours(_rows(np.empty((0, 0), np.int64), np.empty((0, 0), np.float32)), 0, exc.what)
    base = getattr(dictionary, "base", dictionary)
    found = nearest_by_cosine(
        directions[:n_base].detach().float().cpu(), k=k, chunk=chunk_size, absolute=bool(base.signed)
    )
    return DecoderNeighbours(_rows(found.indices.numpy(), found.cosines.numpy()), n_base)


def _rows(indices: np.ndarray, cosines: np.ndarray) -> pa.Table:
    n, k = indices.shape
    return pa.table(
        {
            "latent": np.repeat(np.arange(n, dtype=np.int32), k),
            "rank": np.tile(np.arange(k, dtype=np.int32), n),
            "neighbour": indices.reshape(-1).astype(np.int32),
            "decoder_cos": cosines.reshape(-1).astype(np.float64),
        }
    )


def describe_neighbours(summary: dict, k: int) -> str:
    """One line on computed neighbours (``DecoderNeighbours.summary``), for the output of collect and similar."""
    if not summary["ranked"]:
        return f"decoder neighbours: none ({summary['note']})."
    return (
        f"decoder neighbours: the {k} nearest latents of each of {summary['ranked']} latents by decoder cosine "
        f"in {summary['seconds']:.1f} s (SELECT * FROM similar_latents)."
    )


def neighbours_of_loaded(loaded, k: int, chunk_size: int = DEFAULT_CHUNK) -> DecoderNeighbours:
    """The neighbours of a collect's loaded dictionary (``setup.Loaded``), run through the executor's
    ``call`` where the collect set it up."""
    return compute_decoder_neighbours(loaded.dictionary, k, chunk_size)


def store_decoder_neighbours(con, dictionary, run_id: str, k: int = DEFAULT_K, chunk_size: int = DEFAULT_CHUNK) -> dict:
    """Compute (``compute_decoder_neighbours``) and replace collect ``run_id``'s stored neighbours in one
    transaction. Returns ``DecoderNeighbours.summary``."""
    start = time.perf_counter()
    found = compute_decoder_neighbours(dictionary, k, chunk_size)
    write_decoder_neighbours(con, run_id, found.rows)
    return found.summary(time.perf_counter() - start)
