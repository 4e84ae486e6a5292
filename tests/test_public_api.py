"""The public API of ``import autointerp``: the three stages as functions, their configs and ``open_db``,
imported lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import autointerp

from .conftest import SMALL


def test_import_autointerp_loads_no_heavy_library():
    code = (
        "import sys, autointerp\n"
        "autointerp.ExplainConfig, autointerp.explain, autointerp.collect, autointerp.score\n"
        "print(','.join(m for m in ('torch', 'transformers', 'duckdb', 'openai', 'vllm', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_every_export_resolves():
    for name in autointerp.__all__:
        assert getattr(autointerp, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        autointerp.nope  # noqa: B018


def test_stage_functions_and_stage_subpackages_share_their_names():
    import autointerp.explain.stage
    import autointerp.score.stage

    assert callable(autointerp.explain) and callable(autointerp.score) and callable(autointerp.collect)
    assert autointerp.explain.stage.explain is not None and autointerp.score.stage.score is not None


@pytest.mark.slow
def test_collect_explain_score_and_read_through_the_public_api(tmp_path):
    db = tmp_path / "api.duckdb"
    collected = autointerp.collect(autointerp.CollectConfig(**SMALL), db, progress=False)
    assert collected.n_tokens >= SMALL["tokens"] and not collected.skipped
    with autointerp.open_db(db) as database:
        latent = database.sql("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 1").fetchall()[0][0]

    explained = autointerp.explain(autointerp.ExplainConfig(latents=str(latent), max_tokens=60), db, progress=False)
    assert (explained.explained, explained.failed) == (1, 0)
    scored = autointerp.score(autointerp.ScoreConfig(latents=str(latent), scorers="embedding"), db, progress=False)
    assert scored.scored == 1

    with autointerp.open_db(db) as database:
        rows = database.df("SELECT latent, scorer, status FROM scores").to_dict("records")
    assert rows == [{"latent": latent, "scorer": "embedding", "status": "scored"}]
    again = autointerp.collect(autointerp.CollectConfig(**SMALL), db, progress=False)
    assert again.skipped and again.run_id == collected.run_id
