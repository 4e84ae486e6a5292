"""The score stage end to end: a collect database, explanations, detection and fuzzing through the
openai backend against the real OpenAI-protocol test server answering with the embedded model."""

from __future__ import annotations

import asyncio
import json

import pytest

from autointerp.config import ScoreConfig
from autointerp.score.cues import probe_names
from autointerp.score.stage import score

from .conftest import query, with_explanations
from .openai_server import ModelServer

pytestmark = pytest.mark.slow
EXPLANATIONS = ["names of rivers", "the word 'the'", "dates and years", "units of measurement"]


@pytest.fixture
def explained_db(collected_db, tmp_path):
    """The session's collect database with explanations for four latents, as an import would add them."""
    path = tmp_path / "score.duckdb"
    return path, with_explanations(collected_db, path, EXPLANATIONS)


def test_detection_and_fuzzing_rows_for_every_latent(explained_db, local_backend):
    db, latents = explained_db
    with ModelServer(local_backend) as server:
        config = ScoreConfig(backend="openai", model="smollm2", base_url=server.base_url, batch_size=3, max_tokens=16)
        first = asyncio.run(score(config, db, progress=False))
        again = asyncio.run(score(config, db, progress=False))
        served = server.served
    assert first.scored + first.unscored == 8 and again.skipped_done == 8 and again.calls == 0
    rows = query(
        db,
        "SELECT latent, scorer, status, reason, n_examples, n_unscored, chance, explanation_id FROM scores "
        "WHERE scorer NOT LIKE 'cue:%' ORDER BY latent, scorer",
    )
    assert [(r[0], r[1]) for r in rows] == [(lat, s) for lat in latents for s in ("detection", "fuzzing")]
    for latent, _scorer, status, reason, n, _n_unscored, chance, explanation_id in rows:
        assert explanation_id == f"imported/{latent}"
        assert (status == "scored") == (n > 0) and (reason is None) == (status == "scored")
        assert json.loads(chance)["balanced_accuracy"] in (0.5, None)
    # Each score's test set is checked for label cues, once per probe, beside it (issue 15 item 8).
    cue_rows = query(
        db, "SELECT latent, scorer, model, status, n_examples, explanation_id FROM scores WHERE scorer LIKE 'cue:%'"
    )
    expected = sorted((lat, c) for lat in latents for task in ("detection", "fuzzing") for c in probe_names(task))
    assert sorted((r[0], r[1]) for r in cue_rows) == expected
    assert all(r[2] == "none" and r[3] == "scored" and r[4] > 0 and r[5] == f"imported/{r[0]}" for r in cue_rows)
    assert (
        len(query(db, "SELECT scorer, avg(balanced_accuracy) FROM scores WHERE scorer LIKE 'cue:%' GROUP BY 1")) == 12
    )
    # One row per scored context: detection shows the test set once; fuzzing adds false-mark copies.
    per = dict(
        ((r[0], r[1]), r[2:])
        for r in query(
            db,
            "SELECT latent, scorer, count(*), count(*) FILTER (label), count(prediction) "
            "FROM score_examples GROUP BY ALL",
        )
    )
    for latent in latents:
        test_ids = {
            r[0] for r in query(db, "SELECT context_id FROM examples WHERE latent = ? AND split = 'test'", [latent])
        }
        used = {r[0] for r in query(db, "SELECT context_id FROM score_examples WHERE latent = ?", [latent])}
        assert used == test_ids  # only the test set, all of it
        n_test, n_pos = (
            len(test_ids),
            query(
                db, "SELECT count(*) FROM examples WHERE latent = ? AND split = 'test' AND kind = 'quantile'", [latent]
            )[0][0],
        )
        assert per[(latent, "detection")][:2] == (n_test, n_pos)
        assert per[(latent, "fuzzing")][1] == n_pos and per[(latent, "fuzzing")][0] > n_pos
    # Unreadable answers are unscored with a reason, never predictions.
    bad = query(db, "SELECT count(*) FROM score_examples WHERE prediction IS NULL AND reason IS NULL")[0][0]
    assert bad == 0
    calls = query(db, "SELECT count(*) FROM llm_calls WHERE purpose IN ('detection', 'fuzzing')")[0][0]
    assert calls == served == first.calls


def test_shuffled_control_scores_with_other_latents_explanations(explained_db, local_backend):
    db, latents = explained_db
    with ModelServer(local_backend) as server:
        config = ScoreConfig(
            backend="openai",
            model="smollm2",
            base_url=server.base_url,
            scorers="detection",
            control="shuffled",
            max_tokens=16,
        )
        asyncio.run(score(config, db, progress=False))
    rows = query(db, "SELECT latent, explanation_id, control FROM scores ORDER BY latent")
    assert [r[0] for r in rows] == latents and all(r[2] == "shuffled" for r in rows)
    sources = [int(r[1].split("/")[1]) for r in rows]
    assert all(src != lat for lat, src in zip(latents, sources, strict=True)) and sorted(sources) == latents


def test_embedding_scorer_through_the_stage(explained_db, local_backend):
    db, latents = explained_db
    with ModelServer(local_backend) as server:
        config = ScoreConfig(backend="openai", model="smollm2", base_url=server.base_url, scorers="embedding")
        result = asyncio.run(score(config, db, progress=False))
        assert server.served == 0  # no LLM call
    assert result.scored == 4 and result.calls == 0
    rows = query(
        db,
        "SELECT latent, status, auroc, n_calls, model, chance FROM scores WHERE scorer = 'embedding' ORDER BY latent",
    )
    assert [r[0] for r in rows] == latents
    for _latent, status, auroc, n_calls, model, chance in rows:
        assert status == "scored" and 0 <= auroc <= 1 and n_calls == 0 and model
        assert json.loads(chance)["auroc"] == 0.5
    sims = query(
        db,
        "SELECT count(*), count(probability), min(probability), max(probability) FROM score_examples "
        "WHERE scorer = 'embedding'",
    )[0]
    assert sims[0] == sims[1] > 0 and -1 <= sims[2] <= sims[3] <= 1
    # With the local backend named, no local model is loaded either.
    import autointerp.llm.local_backend as local_module

    loads = []
    original = local_module.LocalBackend.__init__
    local_module.LocalBackend.__init__ = lambda self, *a, **k: (loads.append(1), original(self, *a, **k))[1]
    try:
        again = asyncio.run(score(ScoreConfig(scorers="embedding", control="shuffled"), db, progress=False))
    finally:
        local_module.LocalBackend.__init__ = original
    assert loads == [] and again.scored == 4 and again.calls == 0


def test_guided_answers_with_logprobs_give_a_probability_per_context(explained_db, local_backend):
    """With --guided on (answer prefilled with its marker, digits constrained by a regex, both sent as
    `vllm serve`'s extensions) and --logprobs, the embedded model's every batch is readable and every
    context gets P(1) from the digit's logprobs; AUROC comes from those probabilities."""
    db, latents = explained_db
    with ModelServer(local_backend) as server:
        config = ScoreConfig(
            backend="openai",
            model="smollm2",
            base_url=server.base_url,
            batch_size=4,
            scorers="detection",
            latents=f"{latents[0]}-{latents[1]}",
            guided="on",
            logprobs=True,
        )
        result = asyncio.run(score(config, db, progress=False))
    assert result.scored == 2 and result.unscored == 0
    rows = query(db, "SELECT label, prediction, probability, reason FROM score_examples WHERE scorer = 'detection'")
    assert rows and all(r[1] is not None and r[3] is None for r in rows)
    assert all(0.0 <= r[2] <= 1.0 for r in rows)
    # The digit read from the answer and its probability agree: greedy decoding picks the likelier digit.
    assert all((r[2] >= 0.5) == r[1] for r in rows)
    for auroc, labels in query(
        db,
        "SELECT s.auroc, list(e.label) FROM scores s JOIN score_examples e USING "
        "(latent, scorer, config_hash) GROUP BY ALL",
    ):
        assert (auroc is None) == (len(set(labels)) < 2)
    sent = query(db, "SELECT messages, options FROM llm_calls WHERE purpose = 'detection' LIMIT 1")[0]
    assert json.loads(sent[1])["prefill"] == "[ANSWER]:" and json.loads(sent[1])["regex"].startswith("( [01]){")
