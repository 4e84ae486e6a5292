"""The controls through the score stage on a real collect database: the shuffled partner frozen by the
collect whatever --latents says, the empty explanation scored by every scorer (the embedded model as
LLM and as steered subject), intervention_choice's decoys without the lent latent, `control_gaps`, and
the refusal to blend explainer configurations (CLI exit 2)."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from autointerp.cli import main
from autointerp.config import ScoreConfig
from autointerp.errors import AutointerpError
from autointerp.score.stage import score
from autointerp.store.db import connect

from .conftest import query, with_explanations

pytestmark = pytest.mark.slow
EXPLANATIONS = ["names of rivers", "the word 'the'", "dates and years", "units of measurement"]
SMALL = {"intervention_prompts": 2, "completion_tokens": 8, "choices": 3, "batch_size": 25, "max_tokens": 16}


@pytest.fixture
def explained_db(collected_db, tmp_path):
    path = tmp_path / "controls.duckdb"
    return path, with_explanations(collected_db, path, EXPLANATIONS)


def run(db, backend=None, **fields):
    return asyncio.run(score(ScoreConfig(**fields), db, progress=False, backend=backend))


def partners_of(db, control="shuffled") -> dict[int, int]:
    rows = query(db, "SELECT latent, explanation_id FROM scores WHERE control = ?", [control])
    return {lat: int(eid.split("/")[1]) for lat, eid in rows}


def test_shuffled_partners_are_frozen_by_the_collect_and_gaps_pair_up(explained_db, tmp_path):
    db, latents = explained_db
    untouched = tmp_path / "subset.duckdb"
    shutil.copy(db, untouched)
    run(db, scorers="embedding")
    run(db, scorers="embedding", control="shuffled")
    run(db, scorers="embedding", control="empty")
    full = partners_of(db)
    assert sorted(full) == latents and all(lat != p for lat, p in full.items()) and sorted(full.values()) == latents
    # scoring a subset gives each of its latents the same partner as scoring them all did
    for subset in ([latents[0], latents[2]], [latents[3]]):
        shutil.copy(untouched, tmp_path / "s.duckdb")
        run(tmp_path / "s.duckdb", scorers="embedding", control="shuffled", latents=",".join(map(str, subset)))
        assert partners_of(tmp_path / "s.duckdb") == {lat: full[lat] for lat in subset}
    # the empty control: scored, under the id of the explanation it stands in for
    empty = query(db, "SELECT latent, explanation_id, status FROM scores WHERE control = 'empty' ORDER BY latent")
    assert empty == [(lat, f"imported/{lat}", "scored") for lat in latents]
    # control_gaps: each real score with both controls, gap = score - control
    gaps = query(
        db,
        "SELECT g.latent, g.control, g.gap, g.score - g.control_score, s.score, c.score FROM control_gaps g "
        "JOIN scores s ON s.latent = g.latent AND s.control = '' AND s.scorer = g.scorer "
        "JOIN scores c ON c.latent = g.latent AND c.control = g.control AND c.scorer = g.scorer",
    )
    assert sorted((r[0], r[1]) for r in gaps) == sorted((lat, c) for lat in latents for c in ("empty", "shuffled"))
    assert all(r[2] == pytest.approx(r[3]) == pytest.approx(r[4] - r[5]) for r in gaps)


def test_blended_explainers_need_explanations_chosen(explained_db, capsys):
    db, latents = explained_db
    con = connect(db)
    con.execute(
        "INSERT INTO explanation_rows VALUES (?, 'other', 'r2', 'contrastive', 'test', 'explained', 'rivers', "
        "NULL, NULL, NULL, 0, 0, 0, now())",
        [latents[1]],
    )
    con.close()
    with pytest.raises(AutointerpError, match="2 explainer configurations"):
        run(db, scorers="embedding")
    assert main(["score", "--db", str(db), "--scorers", "embedding", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "imported (explainer default, model test): 4 latents" in err
    assert "other (explainer contrastive, model test): 1 latent" in err and "--explanations" in err
    assert query(db, "SELECT count(*) FROM score_rows")[0][0] == 0  # nothing stored
    # one configuration chosen, or latents that only one configuration explained: scored
    assert main(["score", "--db", str(db), "--scorers", "embedding", "--explanations", "imported", "--quiet"]) == 0
    lone = f"{latents[0]},{latents[2]}"
    assert main(["score", "--db", str(db), "--scorers", "embedding", "--latents", lone, "--quiet"]) == 0
    assert {r[0] for r in query(db, "SELECT DISTINCT explanation_id FROM scores")} == {
        f"imported/{lat}" for lat in latents
    }


def test_llm_scorers_score_the_empty_explanation(explained_db, local_backend):
    db, latents = explained_db
    result = run(
        db,
        local_backend,
        scorers="detection,fuzzing,simulation",
        control="empty",
        latents=str(latents[0]),
        max_tokens=16,
        simulation_contexts=2,
        simulation_batch=2,
    )
    assert result.scored + result.unscored == 3
    rows = query(db, "SELECT scorer, status, reason, explanation_id FROM scores ORDER BY scorer")
    assert [r[0] for r in rows] == ["detection", "fuzzing", "simulation"]
    assert all(r[3] == f"imported/{latents[0]}" and (r[1] == "scored") == (r[2] is None) for r in rows)
    prompts = [json.loads(r[0]) for r in query(db, "SELECT messages FROM llm_calls")]
    users = [m["content"] for p in prompts for m in p if m["role"] == "user"]
    assert users and all(u.startswith("Explanation: \n") and "None" not in u.split("\n")[0] for u in users)


def test_intervention_controls(explained_db, local_backend):
    db, latents = explained_db
    run(db, local_backend, scorers="intervention", **SMALL)
    run(db, local_backend, scorers="intervention", control="shuffled", **SMALL)
    partner = partners_of(db)
    choices = query(
        db,
        "SELECT latent, detail FROM scores WHERE scorer = 'intervention_choice' AND control = 'shuffled' "
        "AND status = 'scored'",
    )
    assert choices  # some latent reached the target KL and got a question
    for latent, detail in choices:
        offered = json.loads(detail)["choices"]
        assert latent in offered and partner[latent] not in offered  # the lent latent is never a decoy
    run(db, local_backend, scorers="intervention", control="empty", **SMALL)
    surprisal = query(
        db,
        "SELECT score, detail FROM scores WHERE scorer = 'intervention_surprisal' AND control = 'empty' "
        "AND status = 'scored'",
    )
    assert surprisal and all(s == 0.0 and set(json.loads(d)["per_prompt"]) == {0.0} for s, d in surprisal)
    gaps = query(db, "SELECT DISTINCT scorer, control FROM control_gaps ORDER BY ALL")
    scored = {r[0] for r in query(db, "SELECT scorer FROM scores WHERE control = '' AND status = 'scored'")}
    assert {s for s, _ in gaps} == scored and {c for _, c in gaps} <= {"empty", "shuffled"}
