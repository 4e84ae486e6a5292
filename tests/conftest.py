"""Shared fixtures: a small collect on the embedded default, done once per test session."""

from __future__ import annotations

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
