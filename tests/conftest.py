"""Shared fixtures: a small collect on the embedded default, done once per test session."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from autointerp.config import CollectConfig

SMALL = dict(
    tokens=6144,
    seq_len=256,
    batch_size=8,
    top_k=3,
    n_quantiles=2,
    explain_per_quantile=1,
    test_per_quantile=1,
    reservoir=8,
    random_explain=2,
    random_test=2,
    min_activating=4,  # 24 sequences: the default 20 would leave few latents to explain
)


def small_config(**overrides) -> CollectConfig:
    return CollectConfig(**{**SMALL, **overrides})


@pytest.fixture(scope="session")
def collected_db(tmp_path_factory):
    """A database written by `autointerp collect` on the embedded default (small token budget)."""
    from autointerp.cli import main

    path = tmp_path_factory.mktemp("collect") / "small.duckdb"
    args = ["collect", "--db", str(path), "--quiet"]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    assert main(args) == 0
    return path


@pytest.fixture(scope="module")
def local_backend():
    """The in-process embedded model, behind the OpenAI-protocol test server of a test module."""
    from autointerp.llm.local_backend import LocalBackend

    return LocalBackend()


def with_explanations(collected_db, path, explanations: list[str]) -> list[int]:
    """Copy the collect database to ``path`` and give its first ``ok`` latents the ``explanations``, as an
    import would add them (explanation_id 'imported/<latent>'); returns those latents."""
    import shutil

    from autointerp.store.db import connect

    shutil.copy(collected_db, path)
    con = connect(path)
    try:
        latents = [
            r[0]
            for r in con.execute(
                "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT ?", [len(explanations)]
            ).fetchall()
        ]
        for latent, text in zip(latents, explanations, strict=True):
            con.execute(
                "INSERT INTO explanation_rows VALUES (?, 'imported', 'import-test', 'default', 'test', "
                "'explained', ?, NULL, NULL, NULL, 0, 0, 0, now())",
                [latent, text],
            )
    finally:
        con.close()
    return latents


def query(db, sql: str, params=()) -> list[tuple]:
    """Rows of ``sql`` on the database file ``db``, opened read-only and closed again."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


# Fixtures that load the embedded model (or run a collect with it); a test using one is slow.
MODEL_FIXTURES = frozenset({"collected_db", "local_backend"})


def pytest_collection_modifyitems(config, items):
    """Refuse a test that uses a model-loading fixture without the ``slow`` mark, so that
    ``pytest -m "not slow"`` stays fast."""
    unmarked = [
        f"{item.nodeid} (uses {', '.join(sorted(MODEL_FIXTURES & set(item.fixturenames)))})"
        for item in items
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError("mark these tests @pytest.mark.slow:\n  " + "\n  ".join(unmarked))


COLLECT_TABLES = ("collections", "contexts", "latent_examples", "latent_stats")


def differing_rows(a: Path, b: Path) -> dict[str, tuple[int, int, int]]:
    """Per result table: (rows in a, rows only in a, rows only in b), comparing every column but run_id."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    out = {}
    for table in COLLECT_TABLES:
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_catalog = 'a' AND table_name = ? "
                "ORDER BY ordinal_position",
                [table],
            ).fetchall()
            if r[0] != "run_id"
        ]
        cols = ", ".join(f'"{c}"' for c in columns)
        only = [
            con.execute(
                f"SELECT count(*) FROM (SELECT {cols} FROM {x}.{table} EXCEPT ALL SELECT {cols} FROM {y}.{table})"
            ).fetchone()[0]
            for x, y in (("a", "b"), ("b", "a"))
        ]
        out[table] = (con.execute(f"SELECT count(*) FROM a.{table}").fetchone()[0], *only)
    con.close()
    return out


def assert_same_collect(a: Path, b: Path) -> None:
    diff = differing_rows(a, b)
    assert all(n > 0 for n, _, _ in diff.values()), diff
    assert all(x == 0 and y == 0 for _, x, y in diff.values()), diff
