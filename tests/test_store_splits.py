"""store/splits.py: each latent's (activating, negative) example counts per split."""

from __future__ import annotations

import duckdb

from autointerp.store.splits import split_sizes, validate_sizes


def test_counts_per_split_with_every_kind():
    con = duckdb.connect()
    con.execute("CREATE TABLE examples (latent INTEGER, split VARCHAR, kind VARCHAR)")
    rows = [(0, "validate", "quantile")] * 3 + [(0, "validate", "random")] * 2 + [(0, "validate", "hard")]
    rows += [(0, "test", "quantile"), (1, "explain", "top"), (1, "validate", "weak"), (2, "test", "random")]
    con.executemany("INSERT INTO examples VALUES (?, ?, ?)", rows)
    assert validate_sizes(con) == {0: (3, 3), 1: (0, 1), 2: (0, 0)}
    assert validate_sizes(con, [1, 7]) == {1: (0, 1), 7: (0, 0)}
    assert split_sizes(con, "test", [0, 2]) == {0: (1, 0), 2: (0, 1)}
    assert split_sizes(con, "explain") == {0: (0, 0), 1: (1, 0), 2: (0, 0)}
