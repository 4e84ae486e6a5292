"""Collect's three phases in this process: cut in several shards (``LocalExecutor(shard_tokens=...)``),
merged and written, a collect equals the one-shard collect row for row, and keeps nothing on disk."""

from __future__ import annotations

import json

import duckdb
import pytest

from autointerp.collect.stage import collect
from autointerp.config import ExecutorConfig
from autointerp.errors import AutointerpError
from autointerp.executor import LocalExecutor

from .conftest import assert_same_collect, small_config


@pytest.mark.slow
def test_several_shards_in_process_equal_one(collected_db, tmp_path):
    db = tmp_path / "shards.duckdb"
    result = collect(small_config(), db, progress=False, executor=LocalExecutor(shard_tokens=2048))
    assert not result.skipped and result.n_tokens == small_config().tokens
    assert_same_collect(collected_db, db)
    assert not (tmp_path / "shards.duckdb.parts").exists(), "an in-process run keeps no parts"
    con = duckdb.connect(str(db), read_only=True)
    stored, summary = con.execute("SELECT config, summary FROM runs WHERE stage = 'collect'").fetchone()
    con.close()
    assert "executor" not in json.loads(stored) and "executor" not in json.loads(summary)  # as a one-shard run


def test_a_stage_given_an_executor_config_says_how_to_build_its_executor(tmp_path):
    with pytest.raises(AutointerpError, match="make_executor"):
        collect(small_config(), tmp_path / "x.duckdb", executor=ExecutorConfig())
    assert not list(tmp_path.iterdir())
