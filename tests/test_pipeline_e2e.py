"""collect -> explain -> score with all five scorers, on the embedded default, through the CLI, in one
real DuckDB file: every latent explained gets a row per scorer (scored, or unscored with a reason),
each with its chance level, and a rerun does nothing."""

from __future__ import annotations

import json
import shutil

import pytest

from autointerp.cli import main

from .conftest import query

pytestmark = pytest.mark.slow
SCORERS = ["detection", "fuzzing", "embedding", "simulation", "intervention"]
ROWS = [
    "detection",
    "fuzzing",
    "embedding",
    "simulation",
    "intervention",
    "intervention_choice",
    "intervention_surprisal",
]
CHANCE = {
    "detection": 0.5,
    "fuzzing": 0.5,
    "embedding": 0.5,
    "simulation": 0.0,
    "intervention": 0.5,
    "intervention_choice": 0.5,
    "intervention_surprisal": 0.0,
}


def test_collect_explain_score_with_every_scorer(collected_db, tmp_path):
    db = tmp_path / "pipeline.duckdb"
    shutil.copy(collected_db, db)
    latents = [r[0] for r in query(db, "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 2")]
    chosen = f"{latents[0]},{latents[1]}"
    assert main(["explain", "--db", str(db), "--quiet", "--latents", chosen, "--max-tokens", "60"]) == 0
    explained = [r[0] for r in query(db, "SELECT latent FROM explanations WHERE status = 'explained' ORDER BY latent")]
    assert explained == latents  # guided, the embedded explainer's answers parse
    score = [
        "score",
        "--db",
        str(db),
        "--quiet",
        "--latents",
        chosen,
        "--scorers",
        ",".join(SCORERS),
        "--batch-size",
        "4",
        "--fuzz-random",
        "2",
        "--fuzz-misplaced",
        "2",
        "--simulation-contexts",
        "4",
        "--simulation-batch",
        "2",
        "--intervention-prompts",
        "2",
        "--completion-tokens",
        "6",
        "--choices",
        "2",
    ]
    assert main(score) == 0
    rows = query(
        db,
        "SELECT latent, scorer, status, reason, score, chance, n_examples FROM scores "
        "WHERE scorer NOT LIKE 'cue:%' ORDER BY ALL",
    )
    assert sorted((r[0], r[1]) for r in rows) == sorted((lat, s) for lat in latents for s in ROWS)
    for latent, scorer, status, reason, headline, chance, n in rows:
        assert json.loads(chance)["score"] == pytest.approx(CHANCE[scorer]), (scorer, chance)
        if status == "scored":
            assert headline is not None and reason is None and n > 0, (latent, scorer)
        else:
            assert status == "unscored" and reason and headline is None, (latent, scorer)
    assert (
        query(db, "SELECT count(*) FROM scores WHERE scorer IN ('detection', 'embedding') AND status = 'scored'")[0][0]
        == 4
    )  # guided digits always parse; embedding needs no LLM
    completions = query(db, "SELECT latent, steered, completion FROM interventions ORDER BY ALL")
    assert {r[0] for r in completions} >= set(latents)
    # Scored contexts come from the test set only.
    leaked = query(
        db,
        "SELECT count(*) FROM score_examples s JOIN examples e ON e.latent = s.latent AND "
        "e.context_id = s.context_id AND e.split = 'explain' WHERE s.scorer NOT LIKE 'intervention%'",
    )
    assert leaked[0][0] == 0
    calls = query(db, "SELECT count(*) FROM llm_calls")[0][0]
    assert main(score) == 0  # a rerun finds every score done
    assert query(db, "SELECT count(*) FROM llm_calls")[0][0] == calls
    summary = query(db, "SELECT detection_score, embedding_score FROM latent_summary WHERE latent = ?", [latents[0]])
    assert summary[0][1] is not None
