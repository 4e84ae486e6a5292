"""Read the ``coverage`` view (migration 0011): per decade of firing frequency, how many latents are
live, ``ok``, explained, scored by each scorer, and skipped by status and reason class.

The view has one row per (decade, measure[, scorer | status and reason class]); ``read_coverage``
gathers them into one record per decade. Which reason class a skipped latent gets is decided in one
place, the ``latent_coverage`` view's CASE in ``migrations/0011_coverage.sql``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np


@dataclass
class DecadeCoverage:
    """The latents of one decade of firing frequency (or the dead ones) and how far each stage got."""

    decade: str
    """'dead', '(0, 1e-6)', '[1e-6, 1e-5)', ..., '[0.1, 1]'."""
    latents: int = 0
    live: int = 0
    ok: int = 0
    explained: int = 0
    scored: dict[str, int] = field(default_factory=dict)
    """Latents with a 'scored' row of their own explanation (control = ''), per scorer."""
    skipped: dict[tuple[str, str], int] = field(default_factory=dict)
    """Latents that are not ``ok``, per (status, reason class)."""


def has_coverage(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the database has the ``coverage`` view (an older one opened read-only may not)."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'main' AND view_name = 'coverage' AND NOT internal"
    ).fetchall()
    return found[0][0] > 0


def read_coverage(con: duckdb.DuckDBPyConnection) -> list[DecadeCoverage]:
    """One record per decade that holds latents, dead latents first, then rare to frequent."""
    rows = con.execute(
        "SELECT decade_order, decade, measure, scorer, status, reason_class, latents FROM coverage "
        "ORDER BY decade_order, measure, scorer, status, reason_class"
    ).fetchall()
    decades: dict[int, DecadeCoverage] = {}
    for order, decade, measure, scorer, status, reason_class, latents in rows:
        record = decades.setdefault(order, DecadeCoverage(decade))
        if measure == "scored":
            record.scored[scorer] = latents
        elif measure == "skipped":
            record.skipped[(status, reason_class)] = latents
        else:
            setattr(record, measure, latents)
    return [decades[k] for k in sorted(decades)]


@dataclass
class LiveContexts:
    """What a collect saw of its live latents: the activating contexts of each, and the corpus read."""

    n_active_contexts: np.ndarray
    """Activating contexts of every live latent (n_firing > 0), in latent order."""
    n_sequences: int
    seq_len: int


def read_live_contexts(con: duckdb.DuckDBPyConnection) -> LiveContexts | None:
    """The stored collect's live latents and corpus size; None when no collect is stored."""
    collection = con.execute("SELECT n_sequences, seq_len FROM collections ORDER BY run_id DESC LIMIT 1").fetchall()
    if not collection:
        return None
    counts = con.execute("SELECT n_active_contexts FROM latent_stats WHERE n_firing > 0 ORDER BY latent").fetchnumpy()
    return LiveContexts(counts["n_active_contexts"].astype(np.int64), int(collection[0][0]), int(collection[0][1]))
