"""The intervention scorers end to end through the score stage: a real collect database, the embedded
model steered by its SAE, the embedded model as judge (in-process backend behind the stage runner's LLM
queue and call log), every row in DuckDB. Small settings (2 neutral prompts, 8 tokens) keep it to a
minute or two on 2 CPU cores."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import time

import pytest

from autointerp.collect.reopen import read_collect_source
from autointerp.config import ScoreConfig
from autointerp.errors import AutointerpError
from autointerp.score import intervention as iv
from autointerp.score import registry
from autointerp.score.intervention import generation, kl, surprisal
from autointerp.score.intervention.judge import choice_messages, judge_messages, parse_choice, shown_text
from autointerp.score.intervention.store import SteeringStore
from autointerp.score.stage import ScoreResult
from autointerp.score.stage import score as score_stage
from autointerp.store.db import connect

from .conftest import query, with_explanations
from .test_score_intervention import reference_kl

EXPLANATIONS = ["names of rivers", "dates and years", "units of measurement"]
SMALL = {"intervention_prompts": 2, "completion_tokens": 8, "choices": 3, "batch_size": 25, "max_tokens": 16}
SCORERS = registry.GROUPS["intervention"]


@pytest.fixture
def explained_db(collected_db, tmp_path):
    """The session's collect database with explanations for three latents."""
    path = tmp_path / "intervention.duckdb"
    return path, with_explanations(collected_db, path, EXPLANATIONS)


class Counting:
    """Counts calls of the steering core's expensive functions and of the subject model's loading (each
    call runs the real function)."""

    def __init__(self, monkeypatch):
        targets = {
            "scale_for_target_kl": kl,
            "generate_clean_and_steered": generation,
            "surprisal_score": surprisal,
            "model": SteeringStore,
        }
        self.calls = dict.fromkeys(targets, 0)
        for name, owner in targets.items():
            real = getattr(owner, name)

            def spy(*args, _real=real, _name=name, **kwargs):
                self.calls[_name] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(owner, name, spy)


def run_scorer(db, config: ScoreConfig, backend) -> tuple[ScoreResult, float]:
    """One run of the score stage with ``backend`` as judge; returns (its result, seconds)."""
    start = time.perf_counter()
    result = asyncio.run(score_stage(config, db, progress=False, backend=backend))
    return result, time.perf_counter() - start


@pytest.mark.slow
def test_three_scores_per_latent_stored_and_resumed(explained_db, local_backend, monkeypatch):
    db, latents = explained_db
    counting = Counting(monkeypatch)
    config = ScoreConfig(scorers="intervention", **SMALL)
    result, seconds = run_scorer(db, config, local_backend)
    print(f"intervention scorer: {seconds / len(latents):.1f} s per latent")  # reported with -s
    assert result.scored + result.unscored == 3 * len(SCORERS) and result.skipped_done == 0
    assert result.resources["steering"]["steered"] == 3  # each latent steered once, whether as itself or as a choice
    assert counting.calls["scale_for_target_kl"] == 3 and counting.calls["generate_clean_and_steered"] == 3

    # the completions: a clean and a steered one per prompt, the steered ones at the calibrated KL
    rows = query(
        db,
        "SELECT latent, config_hash, completion_id, prompt_index, prompt, steered, completion, scale, "
        "target_kl, achieved_kl FROM interventions ORDER BY latent, completion_id",
    )
    steering_hash = rows[0][1]
    assert len(rows) == 3 * 2 * 2 and {r[1] for r in rows} == {steering_hash}
    prompts = iv.neutral_prompts()[:2]
    con = connect(db)
    try:
        subject, sae = read_collect_source(con).load()
    finally:
        con.close()
    for latent in latents:
        mine = [r for r in rows if r[0] == latent]
        assert [(r[2], r[3], r[5]) for r in mine] == [(0, 0, False), (1, 0, True), (2, 1, False), (3, 1, True)]
        assert [r[4] for r in mine] == [prompts[0], prompts[0], prompts[1], prompts[1]]
        clean, steered = [r for r in mine if not r[5]], [r for r in mine if r[5]]
        assert all(r[7] == 0 and r[9] == 0 for r in clean)
        scale, achieved = steered[0][7], steered[0][9]
        assert scale > 0 and all(r[7] == scale and r[8] == 1.0 for r in steered)
        assert abs(achieved - 1.0) <= 0.1 * 1.0  # the stated tolerance: 10% of the target
        # an independent recomputation (right padding, a bare hook) at the stored scale
        hookpoint, direction = iv.steering_target(sae, latent, subject)
        again = reference_kl(subject.model, subject.tokenizer, hookpoint, direction, prompts, scale)
        assert again == pytest.approx(achieved, abs=1e-3)
    assert any(c[6] != s[6] for c, s in zip(rows[0::2], rows[1::2], strict=True))  # steering changed some continuation

    scores = query(
        db,
        "SELECT latent, scorer, status, reason, score, balanced_accuracy, accuracy, chance, detail, "
        "n_examples, n_calls, model, explanation_id FROM scores ORDER BY latent, scorer",
    )
    assert [(r[0], r[1]) for r in scores] == [(lat, s) for lat in latents for s in sorted(SCORERS)]
    for latent, name, status, reason, score, bacc, acc, chance, detail, n, n_calls, model, explanation_id in scores:
        chance, detail = json.loads(chance), json.loads(detail)
        assert explanation_id == f"imported/{latent}"
        assert detail["calibration"]["intervention_config"] == steering_hash
        assert detail["calibration"]["reached"] and abs(detail["calibration"]["achieved_kl"] - 1.0) <= 0.1
        assert (status == "scored") == (reason is None)
        if name == "intervention":
            assert chance["score"] == 0.5 and model == local_backend.model and n_calls == 1
            assert status != "scored" or (score == bacc and 0 <= score <= 1 and n == 4)
        elif name == "intervention_choice":
            assert chance["score"] == pytest.approx(1 / 3) and n_calls == 1
            assert len(detail["choices"]) == 3 and detail["choices"][detail["correct"]] == latent
            assert sorted(detail["choices"]) == latents
            assert status != "scored" or (
                score == acc and score in (0.0, 1.0) and (score == 1.0) == (detail["chosen"] == detail["correct"])
            )
        else:
            assert status == "scored" and chance["score"] == 0.0 and n_calls == 0 and n == 2
            assert score == pytest.approx(sum(detail["per_prompt"]) / 2)
            assert detail["per_prompt"] == pytest.approx(
                [s - c for s, c in zip(detail["logp_steered"], detail["logp_clean"], strict=True)]
            )
            assert model == subject.name
    # per-completion rows point at the interventions rows they showed
    examples = query(
        db,
        "SELECT e.latent, e.scorer, e.context_id, e.label, i.steered, e.variant, e.prediction, "
        "e.reason, e.call_id FROM score_examples e JOIN interventions i ON i.latent = e.latent "
        "AND i.completion_id = e.context_id",
    )
    assert len(examples) == 3 * (4 + 2 + 4)
    assert all(r[3] == r[4] and r[5] == ("steered" if r[4] else "clean") for r in examples)
    assert all((r[6] is None) == (r[7] is not None) for r in examples)  # unscored always says why
    assert all(r[8] is not None for r in examples if r[1] != "intervention_surprisal")
    calls = query(db, "SELECT count(*), count(DISTINCT item) FROM llm_calls WHERE purpose = 'intervention'")[0]
    assert calls == (6, 6)

    # Rerun: everything stored, nothing recomputed, no call made.
    before = query(db, "SELECT latent, completion_id, created_at FROM interventions ORDER BY ALL")
    loads = counting.calls["model"]
    again, _ = run_scorer(db, config, local_backend)
    assert (
        again.scored + again.unscored == 0 and again.skipped_done == 9 and again.resources["steering"]["steered"] == 0
    )
    assert counting.calls["model"] == loads  # the subject model is not even loaded
    assert counting.calls["generate_clean_and_steered"] == 3
    assert query(db, "SELECT count(*) FROM llm_calls")[0][0] == 6

    # Another judge setting: new judge scores, the stored continuations reused without steering again.
    other = ScoreConfig(scorers="intervention", **{**SMALL, "max_tokens": 12})
    third, _ = run_scorer(db, other, local_backend)
    hashes = dict(query(db, "SELECT scorer, count(DISTINCT config_hash) FROM scores GROUP BY scorer"))
    assert hashes == {"intervention": 2, "intervention_choice": 2, "intervention_surprisal": 1}
    new = query(db, "SELECT latent, scorer FROM scores WHERE run_id = ? ORDER BY ALL", [third.run_id])
    assert new == [(lat, s) for lat in latents for s in ("intervention", "intervention_choice")]
    assert third.skipped_done == 3 and third.resources["steering"]["steered"] == 0
    assert counting.calls["generate_clean_and_steered"] == 3
    assert counting.calls["scale_for_target_kl"] == 3
    assert query(db, "SELECT latent, completion_id, created_at FROM interventions ORDER BY ALL") == before


@pytest.mark.slow
def test_unreachable_target_kl_is_unscored_with_reason(explained_db, local_backend):
    db, latents = explained_db
    config = ScoreConfig(scorers="intervention", latents=str(latents[0]), target_kl=200.0, **SMALL)
    result, _ = run_scorer(db, config, local_backend)
    assert result.unscored == 3 and result.scored == 0
    rows = query(db, "SELECT scorer, status, reason, score, chance, detail FROM scores ORDER BY scorer")
    assert [r[0] for r in rows] == sorted(SCORERS)
    for name, status, reason, score, chance, detail in rows:
        assert status == "unscored" and score is None
        assert reason.startswith("steering cannot reach target KL 200 ± 20 nats: the largest KL is ")
        calibration = json.loads(detail)["calibration"]
        assert calibration["reached"] is False and calibration["scale"] is None
        assert (
            json.loads(chance)["score"]
            == {"intervention": 0.5, "intervention_choice": 1 / 3, "intervention_surprisal": 0.0}[name]
        )
    assert query(db, "SELECT count(*) FROM interventions")[0][0] == 0
    assert query(db, "SELECT count(*) FROM llm_calls")[0][0] == 0
    # the failure is remembered: a scorer with another judge does not calibrate again
    again = ScoreConfig(scorers="intervention", latents=str(latents[0]), target_kl=200.0, **{**SMALL, "max_tokens": 12})
    second, _ = run_scorer(db, again, local_backend)
    assert second.resources["steering"]["steered"] == 0 and second.unscored == 2 and second.scored == 0


@pytest.mark.slow
def test_missing_dictionary_and_bad_settings_are_clear_errors(collected_db, tmp_path):
    path = tmp_path / "moved.duckdb"
    shutil.copy(collected_db, path)
    con = connect(path)
    try:
        config = json.loads(con.execute("SELECT config FROM runs WHERE stage = 'collect'").fetchone()[0])
        config["sae"] = str(tmp_path / "gone-sae")
        config["resolved"]["sae_path"] = str(tmp_path / "gone-sae")
        con.execute("UPDATE runs SET config = ? WHERE stage = 'collect'", [json.dumps(config)])
        with pytest.raises(AutointerpError, match="gone"):
            read_collect_source(con).load()
        con.execute("DELETE FROM runs WHERE stage = 'collect'")
        with pytest.raises(AutointerpError, match="no complete collect"):
            read_collect_source(con)
    finally:
        con.close()
    for bad in (
        {"target_kl": 0},
        {"target_kl": math.nan},
        {"kl_tolerance": 1.0},
        {"choices": 1},
        {"choices": 10},
        {"intervention_prompts": 0},
        {"completion_tokens": 0},
        {"intervention_temperature": -1},
    ):
        with pytest.raises(AutointerpError):
            ScoreConfig(scorers="intervention", **bad)


def test_judge_prompts_and_choice_parsing():
    texts = [shown_text("The next day,", " we ate.\n[ANSWER]: 1"), shown_text("I think that", " it rains")]
    assert texts[0] == "The next day, we ate.↵(answer): 1"  # a continuation cannot fake the answer line
    messages = judge_messages("food", texts)
    system = messages[0]["content"]
    assert system.startswith("You check an explanation") and "[ANSWER]: 1 0 0 1" in system
    assert messages[1]["content"] == (
        "Explanation: food\n\nTexts:\n1. The next day, we ate.↵(answer): 1\n2. I think that it rains"
    )
    sets = choice_messages("food", [["a", "b"], ["c"]])[1]["content"]
    assert sets == "Explanation: food\n\nSet 1:\n- a\n- b\n\nSet 2:\n- c"
    assert parse_choice("[ANSWER]: 2", 3) == (1, None)
    assert parse_choice("<think>[ANSWER]: 1</think>Set 3 fits. [ANSWER]: Set 3.", 3) == (2, None)
    assert parse_choice("[ANSWER]: 4", 3)[0] is None and parse_choice("[ANSWER]: 4", 3)[1] == "set 4 of 3"
    assert parse_choice("the second one", 3) == (None, "no '[ANSWER]:' line")
    assert parse_choice("[ANSWER]: 1 or 2", 3)[0] is None
    assert registry.scorer_names(["intervention"]) == [
        "intervention",
        "intervention_choice",
        "intervention_surprisal",
    ]
