"""The controls a score is read against, without a model: the frozen shuffled-control partners, the
empty explanation in every scorer's prompt, the paired gap's interval, the `control_gaps` view and the
refusal to blend explainer configurations (real DuckDB files)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import scipy.stats

from autointerp.config import ScoreConfig
from autointerp.errors import AutointerpError
from autointerp.score import classifier, simulation
from autointerp.score.controls import (
    empty_control,
    explained_latent,
    explainer_config,
    frozen_cycle,
    partners,
)
from autointerp.score.explainer_choice import require_one_explainer
from autointerp.score.intervention import judge, surprisal
from autointerp.score.paired_gap import paired_gap
from autointerp.store.db import connect

# ---- the frozen derangement ------------------------------------------------------------------------


def test_partner_of_a_latent_does_not_depend_on_the_subset_scored():
    latents = list(range(500))
    pool = set(random.Random(1).sample(latents, 120))  # the latents with an explanation
    cycle = frozen_cycle(latents, "collect-hash", 22)
    everyone = partners(cycle, pool, sorted(pool))
    rng = random.Random(2)
    for _ in range(20):
        subset = sorted(rng.sample(sorted(pool), rng.randint(1, 40)))
        assert partners(cycle, pool, subset) == {lat: everyone[lat] for lat in subset}


def test_partners_are_a_derangement_of_the_explained_latents():
    latents = list(range(300))
    for seed in range(5):
        pool = set(random.Random(seed).sample(latents, 2 + seed * 30))
        mapping = partners(frozen_cycle(latents, "c", seed), pool, sorted(pool))
        assert all(lat != other for lat, other in mapping.items())  # nobody is its own partner
        assert sorted(mapping.values()) == sorted(pool)  # a permutation of the explained latents
        # a single cycle: following partners from any latent visits every explained latent
        seen, at = set(), min(pool)
        while at not in seen:
            seen.add(at)
            at = mapping[at]
        assert seen == pool


def test_a_partner_without_an_explanation_is_stepped_over():
    """The documented rule: the partner is the next latent along the cycle that has an explanation."""
    latents = list(range(50))
    cycle = frozen_cycle(latents, "c", 7)
    pool = set(cycle[::3])  # every third latent along the cycle is explained
    mapping = partners(cycle, pool, sorted(pool))
    for lat in pool:
        i = cycle.index(lat)
        following = cycle[i + 1 :] + cycle[: i + 1]
        assert mapping[lat] == next(x for x in following if x in pool)
        assert mapping[lat] != cycle[(i + 1) % len(cycle)]  # its cycle successor has no explanation


def test_the_cycle_is_seeded_by_the_collect_and_the_seed():
    latents = list(range(100))
    assert frozen_cycle(latents, "a", 1) == frozen_cycle(list(reversed(latents)), "a", 1)
    assert frozen_cycle(latents, "a", 1) != frozen_cycle(latents, "b", 1)
    assert frozen_cycle(latents, "a", 1) != frozen_cycle(latents, "a", 2)
    assert sorted(frozen_cycle(latents, "a", 1)) == latents


def test_too_few_explained_latents_and_strangers_are_clear_errors():
    cycle = frozen_cycle(list(range(10)), "c", 0)
    with pytest.raises(AutointerpError, match="at least two explained latents"):
        partners(cycle, {3}, [3])
    with pytest.raises(AutointerpError, match="not a latent of the collect"):
        partners(cycle, {1, 2, 99}, [99])


def test_explanation_ids_and_the_empty_control():
    assert explained_latent("abc/12") == 12 and explainer_config("abc/12") == "abc"
    assert explained_latent("import-x/y/7") == 7 and explainer_config("import-x/y/7") == "import-x/y"
    assert empty_control({3: ("h/3", "rivers"), 5: ("h/5", "dates")}) == {3: ("h/3", ""), 5: ("h/5", "")}


def test_control_option_accepts_empty_and_names_the_choices():
    assert ScoreConfig(control="empty").control == "empty"
    with pytest.raises(AutointerpError, match="'empty'"):
        ScoreConfig(control="blank")


# ---- the empty explanation in every prompt ---------------------------------------------------------


def test_every_prompt_renders_an_empty_explanation():
    ctx = classifier.TestContext(1, "quantile", 0, ["The", " river", " Thames"], [0.0, 2.0, 1.0])
    messages = [
        classifier.build_messages("detection", "", [classifier.Sample(1, True, 0, "The river Thames", "plain")]),
        classifier.build_messages("fuzzing", "", [classifier.Sample(1, True, 0, "The <<river>> Thames", "correct")]),
        simulation.build_messages("", [ctx]),
        judge.judge_messages("", ["a text", "another"]),
        judge.choice_messages("", [["a"], ["b"]]),
    ]
    for pair in messages:
        user = pair[-1]["content"]
        assert "None" not in user and "$explanation" not in user
        assert "Explanation: \n" in user or "Explanation:\n" in user
    context, scored = surprisal.render_surprisal("Some passage.", "")
    assert context.endswith("about:") and scored.strip() == ""
    # surprisal scores nothing of an empty explanation (not the template's leftover space): 0 nats each
    logps = surprisal.explanation_logprobs(None, None, " ", ["clean text", "steered text"])
    assert logps.tolist() == [0.0, 0.0]


# ---- the paired gap ----------------------------------------------------------------------------------


def test_paired_gap_matches_a_reference_bootstrap():
    rng = np.random.default_rng(5)
    scores, controls = rng.normal(0.7, 0.1, 60), rng.normal(0.55, 0.1, 60)
    gap = paired_gap(scores, controls)
    diff = scores - controls
    assert gap.gap == pytest.approx(diff.mean()) and gap.n == 60
    ref = scipy.stats.bootstrap((diff,), np.mean, method="percentile", n_resamples=10_000, random_state=0)
    assert gap.low == pytest.approx(ref.confidence_interval.low, abs=0.005)
    assert gap.high == pytest.approx(ref.confidence_interval.high, abs=0.005)
    assert gap.low < gap.gap < gap.high
    assert paired_gap(scores, controls) == gap  # seeded: the same rows give the same interval
    # pairing matters: the gap's interval is that of the differences, narrower than unpaired noise
    shared = rng.normal(0, 0.3, 60)
    paired = paired_gap(shared + 0.1, shared)
    assert paired.low == pytest.approx(0.1) and paired.high == pytest.approx(0.1)


def test_paired_gap_of_few_latents():
    assert paired_gap([], []).text() == "-"
    one = paired_gap([0.8], [0.5])
    assert one.gap == pytest.approx(0.3) and one.low is None and one.text() == "+0.300, n=1"
    with pytest.raises(ValueError, match="paired"):
        paired_gap([0.1, 0.2], [0.1])


# ---- a database: blended explainers and the control_gaps view -----------------------------------------


def explain_row(con, latent: int, chash: str, explainer: str, text: str = "x") -> None:
    con.execute(
        "INSERT INTO explanation_rows VALUES (?, ?, 'r', ?, 'm', 'explained', ?, NULL, NULL, NULL, 0, 0, 0, now())",
        [latent, chash, explainer, text],
    )


def score_row(con, latent, explanation_id, scorer, config_hash, control, score, status="scored", at="2026-01-01"):
    con.execute(
        "INSERT INTO score_rows BY NAME SELECT ? AS latent, ? AS explanation_id, ? AS scorer, 'm' AS model, "
        "? AS config_hash, ? AS control, 'run' AS run_id, ? AS status, 0 AS n_examples, 0 AS n_unscored, "
        "'{}' AS chance, 0 AS n_calls, 0 AS prompt_tokens, 0 AS completion_tokens, 0 AS fixed_prompt_tokens, "
        "?::TIMESTAMP AS created_at, ? AS score",
        [latent, explanation_id, scorer, config_hash, control, status, at, score],
    )


def ok_latents(con, latents) -> None:
    """A collect row and 'ok' statistics for ``latents``: only explanations of ok latents are eligible."""
    con.execute(
        "INSERT INTO collections BY NAME SELECT 'c' AS run_id, 'm' AS model, 'h' AS hookpoint, 's' AS sae, "
        "'d' AS dataset, 4 AS n_latents, 1 AS n_sequences, 1 AS n_tokens, 8 AS seq_len, 4 AS window_len, "
        "[]::DOUBLE[] AS histogram_edges"
    )
    for lat in latents:
        con.execute(
            "INSERT INTO latent_stats BY NAME SELECT 'c' AS run_id, ? AS latent, 'h' AS hookpoint, 1 AS n_firing, "
            "1 AS n_tokens, 1.0 AS frequency, 1.0 AS max_activation, 30 AS n_active_contexts, "
            "[]::BIGINT[] AS histogram, []::FLOAT[] AS quantile_edges, 'ok' AS status",
            [lat],
        )


def test_blended_explainers_are_refused_with_the_configurations_listed(tmp_path):
    con = connect(tmp_path / "blend.duckdb")
    ok_latents(con, (1, 2, 3))
    for lat in (1, 2, 3):
        explain_row(con, lat, "aaa", "default")
    explain_row(con, 2, "bbb", "contrastive")
    require_one_explainer(con, "", "", [1, 3])  # only one configuration among these latents
    with pytest.raises(AutointerpError) as err:
        require_one_explainer(con, "", "", [1, 2, 3])
    text = str(err.value)
    assert "aaa (explainer default, model m): 3 latents" in text
    assert "bbb (explainer contrastive, model m): 1 latent" in text and "--explanations" in text
    require_one_explainer(con, "aaa", "", [1, 2, 3])  # chosen: fine
    con.close()


def test_control_gaps_pairs_the_same_explainer_and_scorer_configuration(tmp_path):
    con = connect(tmp_path / "gaps.duckdb")
    score_row(con, 1, "E/1", "intervention", "S", "", 0.9)
    score_row(con, 1, "E/1", "intervention", "T", "", 0.7)  # another scorer configuration
    score_row(con, 1, "F/1", "intervention", "S", "", 0.6)  # another explainer configuration
    score_row(con, 1, "E/4", "intervention", "S", "shuffled", 0.55, at="2026-01-01")  # an older partner
    score_row(con, 1, "E/2", "intervention", "S", "shuffled", 0.5, at="2026-01-02")
    score_row(con, 1, "E/1", "intervention", "S", "empty", 0.48)
    score_row(con, 1, "F/3", "intervention", "S", "shuffled", 0.4)
    score_row(con, 1, "E/2", "intervention", "T", "shuffled", None, status="unscored")
    rows = con.execute(
        "SELECT explainer_config, scorer_config, control, control_explanation_id, score, control_score, gap "
        "FROM control_gaps ORDER BY ALL"
    ).fetchall()
    con.close()
    assert rows == [
        ("E", "S", "empty", "E/1", 0.9, 0.48, pytest.approx(0.42)),
        ("E", "S", "shuffled", "E/2", 0.9, 0.5, pytest.approx(0.4)),  # the latest partner, not the older one
        ("F", "S", "shuffled", "F/3", 0.6, 0.4, pytest.approx(0.2)),
    ]  # (E, T): its latest control is unscored, so no pair (never an older or another configuration's)
