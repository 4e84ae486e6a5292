"""The explain stage's public view and call log have exactly the documented columns."""

from __future__ import annotations

import duckdb
import pytest

from autointerp.store.db import connect

from .test_collect_e2e import documented_columns


@pytest.mark.parametrize(
    "name", ["explanations", "llm_calls", "scores", "score_examples", "interventions", "control_gaps"]
)
def test_documented_columns(tmp_path, name):
    connect(tmp_path / "fresh.duckdb").close()
    con = duckdb.connect(str(tmp_path / "fresh.duckdb"), read_only=True)
    columns = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
    assert columns == documented_columns(name)
