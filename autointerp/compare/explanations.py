"""Explanation similarity of matched pairs: the cosine of the two latents' latest explanations'
sentence embeddings.

Embeddings are stored in each input database (``similarity.embeddings``: derived rows, computed only
where missing, so a second comparison reuses them). A database that cannot be opened for writing (a
read-only file, or one locked by another process) is embedded in memory instead, from the same latest
explanations, and nothing is written to it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import numpy as np

from ..errors import AutointerpError
from ..models.sentence_encoder import SentenceEncoder
from ..similarity.embeddings import LATEST, embed_explanations, explanation_vectors
from ..store.db import connect

log = logging.getLogger(__name__)


def latest_vectors(path: Path, encoder: SentenceEncoder) -> dict[int, np.ndarray]:
    """latent -> unit embedding of its latest explanation, for the database at ``path``."""
    try:
        con = connect(path)
    except AutointerpError as exc:
        log.info("embedding the explanations of %s in memory: %s", path, exc)
        return _in_memory(path, encoder)
    try:
        embed_explanations(con, encoder=encoder, latest_only=True)
        found = explanation_vectors(con, encoder.digest())
    except duckdb.Error as exc:  # e.g. a read-only file system under a writable-looking file
        log.info("embedding the explanations of %s in memory: %s", path, exc)
        con.close()
        return _in_memory(path, encoder)
    con.close()
    return dict(zip(found.latents.tolist(), found.vectors, strict=True))


def _in_memory(path: Path, encoder: SentenceEncoder) -> dict[int, np.ndarray]:
    con = connect(path, read_only=True)
    try:
        rows = con.execute(
            f"SELECT x.latent, x.explanation FROM ({LATEST}) l JOIN explanation_rows x USING (latent, config_hash) "
            "ORDER BY x.latent"
        ).fetchall()
    finally:
        con.close()
    if not rows:
        return {}
    vectors = encoder.embed([text for _, text in rows])
    return {latent: vector for (latent, _), vector in zip(rows, vectors, strict=True)}


def explanation_similarity(
    vectors_a: dict[int, np.ndarray], vectors_b: dict[int, np.ndarray], latent_a: np.ndarray, latent_b: np.ndarray
) -> np.ndarray:
    """Cosine of each matched pair's explanation embeddings [m]; NaN where either latent has none."""
    out = np.full(len(latent_a), np.nan)
    for i, (la, lb) in enumerate(zip(latent_a.tolist(), latent_b.tolist(), strict=True)):
        va, vb = vectors_a.get(la), vectors_b.get(lb)
        if va is not None and vb is not None:
            out[i] = float(np.dot(va, vb))
    return out
