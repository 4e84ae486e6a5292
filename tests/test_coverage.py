"""Coverage: the ``coverage`` view against a hand count (on hand-written rows at the decade edges, and on
a real collect), its text section, and collect's warning when the token budget leaves too many live
latents under the minimum, with its token estimate."""

from __future__ import annotations

import bisect
import json
import math
import re
import shutil
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from autointerp.cli import main
from autointerp.collect import budget
from autointerp.config import CollectConfig
from autointerp.query.coverage import coverage_section, render_coverage
from autointerp.store.coverage import LiveContexts, read_coverage
from autointerp.store.db import connect

from .conftest import SMALL, query

EDGES = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
LABELS = ["(0, 1e-6)", "[1e-6, 1e-5)", "[1e-5, 1e-4)", "[1e-4, 1e-3)", "[1e-3, 0.01)", "[0.01, 0.1)", "[0.1, 1]"]


def decade_of(n_firing: int, frequency: float) -> str:
    """The decade by hand: dead, or the bin [edge_k, edge_k+1) holding the frequency (the last one closed)."""
    if n_firing == 0:
        return "dead"
    return LABELS[bisect.bisect_right(EDGES, frequency)]


def reason_class_of(status: str, reason: str | None) -> str | None:
    """The reason classes the view documents, by hand."""
    if status == "ok":
        return None
    if status == "dead":
        return "dead"
    if re.match(r"\d[\d,]* non-activating", reason) or "negatives" in reason:
        return "too_few_negatives"
    if re.match(r"\d[\d,]* activating", reason):
        return "too_few_activating"
    if re.match(r"\d[\d,]* test", reason):
        return "too_few_test"
    return "other"


def hand_count(stats, explained: set[int], scored: set[tuple[int, str]]) -> dict:
    """{(decade, measure, scorer, status, reason_class): latents} from (latent, n_firing, frequency,
    status, reason) rows, the explained latents and the (latent, scorer) pairs with a real score."""
    out = Counter()
    for latent, n_firing, frequency, status, reason in stats:
        d = decade_of(n_firing, frequency)
        out[(d, "latents", None, None, None)] += 1
        if n_firing > 0:
            out[(d, "live", None, None, None)] += 1
        if status == "ok":
            out[(d, "ok", None, None, None)] += 1
        else:
            out[(d, "skipped", None, status, reason_class_of(status, reason))] += 1
        if latent in explained:
            out[(d, "explained", None, None, None)] += 1
        for lat, scorer in scored:
            if lat == latent:
                out[(d, "scored", scorer, None, None)] += 1
    return dict(out)


def view_count(con) -> dict:
    rows = con.execute("SELECT decade, measure, scorer, status, reason_class, latents FROM coverage").fetchall()
    return {tuple(r[:5]): r[5] for r in rows}


# --- hand-written rows at the edges of the decades -----------------------------------------------------

N_TOKENS = 10**7
# (latent, n_firing, status, reason): frequency = n_firing / N_TOKENS; edges hit exactly
STATS = [
    (0, 0, "dead", f"never fired in {N_TOKENS:,} counted tokens"),
    (1, 3, "too_few_examples", "3 activating contexts; 90 needed for 10 quantiles x (4 explain + 5 test)"),
    (2, 10, "too_few_examples", "10 activating contexts; --min-activating is 20"),  # exactly 1e-6
    (3, 99, "too_few_examples", "88 test contexts across quantiles; 50 needed"),
    (4, 100, "ok", None),  # exactly 1e-5
    (5, 1_000, "ok", None),
    (6, 10_000, "ok", None),
    (7, 99_999, "ok", None),
    (8, 100_000, "ok", None),  # exactly 1e-2
    (
        9,
        1_000_000,
        "too_few_examples",
        "12 non-activating contexts found; 60 needed (the latent fires almost everywhere)",
    ),
    (10, 5_000_000, "too_few_examples", "only 3 clean negatives; 60 needed"),
    (11, N_TOKENS, "too_few_examples", "something else entirely"),  # frequency 1: the closed top bin
    (12, 0, "dead", f"never fired in {N_TOKENS:,} counted tokens"),
]


def write_rows(db) -> tuple[list[tuple], set[int], set[tuple[int, str]]]:
    """A database with the collect rows of STATS and explanation and score rows of every kind; returns
    the stats as (latent, n_firing, frequency, status, reason), the explained latents and the scored pairs."""
    con = connect(db)
    try:
        con.execute(
            "INSERT INTO collections VALUES ('c1', 'm', 'model.layers.14', 's', 'd', 13, 39063, ?, 256, 32, [1.0])",
            [N_TOKENS],
        )
        stats = []
        for latent, n_firing, status, reason in STATS:
            frequency = n_firing / N_TOKENS
            stats.append((latent, n_firing, frequency, status, reason))
            con.execute(
                "INSERT INTO latent_stats VALUES ('c1', ?, 'model.layers.14', ?, ?, ?, 1.0, 1.0, ?, [], [], ?, ?)",
                [latent, n_firing, N_TOKENS, frequency, min(n_firing, 39063), status, reason],
            )

        def explanation(latent, config, status):
            con.execute(
                "INSERT INTO explanation_rows (latent, config_hash, run_id, explainer, model, status, explanation, "
                "n_calls, prompt_tokens, completion_tokens, created_at) "
                "VALUES (?, ?, 'e1', 'default', 'test', ?, 'x', 1, 0, 0, now())",
                [latent, config, status],
            )

        def score(latent, scorer, status, control="", config="s1"):
            con.execute(
                "INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, status, "
                "n_examples, n_unscored, chance, n_calls, prompt_tokens, completion_tokens, fixed_prompt_tokens, "
                "created_at) VALUES (?, ?, ?, 'test', ?, ?, 's1', ?, 10, 0, '{}', 1, 0, 0, 0, now())",
                [latent, f"a/{latent}", scorer, config, control, status],
            )

        for latent in (4, 5, 6, 8):
            explanation(latent, "a", "explained")
        explanation(6, "b", "explained")  # a second explanation: still one latent explained
        explanation(7, "a", "unparsed")  # not explained
        explanation(3, "a", "explained")  # an imported explanation of a skipped latent counts as explained
        score(4, "detection", "scored")
        score(4, "detection", "scored", config="s2")  # rescored: one latent
        score(4, "fuzzing", "scored")
        score(5, "detection", "unscored")  # no readable answer: not scored
        score(6, "detection", "scored")
        score(8, "fuzzing", "scored", control="shuffled")  # a control: not the latent's own score
        score(3, "embedding", "scored")
        return stats, {3, 4, 5, 6, 8}, {(4, "detection"), (4, "fuzzing"), (6, "detection"), (3, "embedding")}
    finally:
        con.close()


@pytest.fixture
def handmade(tmp_path):
    db = tmp_path / "hand.duckdb"
    return db, *write_rows(db)


def test_view_matches_a_hand_count_at_the_decade_edges(handmade):
    db, stats, explained, scored = handmade
    con = connect(db, read_only=True)
    try:
        got = view_count(con)
        decades = {r[0]: r[1] for r in con.execute("SELECT latent, decade FROM latent_coverage").fetchall()}
    finally:
        con.close()
    assert got == hand_count(stats, explained, scored)
    # the edges, spelled out
    assert decades[2] == "[1e-6, 1e-5)" and decades[1] == "(0, 1e-6)" and decades[4] == "[1e-5, 1e-4)"
    assert decades[8] == "[0.01, 0.1)" and decades[11] == "[0.1, 1]" and decades[0] == decades[12] == "dead"
    # and a few counts read off the rows above
    assert got[("[1e-5, 1e-4)", "scored", "detection", None, None)] == 1
    assert got[("[0.1, 1]", "skipped", None, "too_few_examples", "too_few_negatives")] == 2
    assert got[("[0.1, 1]", "skipped", None, "too_few_examples", "other")] == 1
    assert got[("dead", "skipped", None, "dead", "dead")] == 2 and ("dead", "live", None, None, None) not in got
    assert ("[0.01, 0.1)", "scored", "fuzzing", None, None) not in got  # only a shuffled control there


def test_read_coverage_and_its_section(handmade):
    db, stats, *_ = handmade
    con = connect(db, read_only=True)
    try:
        decades = read_coverage(con)
    finally:
        con.close()
    assert [d.decade for d in decades] == ["dead"] + LABELS  # dead first, then rare to frequent
    assert sum(d.latents for d in decades) == len(stats)
    top = decades[-1]
    assert (top.latents, top.live, top.ok) == (3, 3, 0)
    assert top.skipped == {("too_few_examples", "too_few_negatives"): 2, ("too_few_examples", "other"): 1}
    text = coverage_section(db)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("frequency"))
    assert header.split() == ["frequency", "latents", "live", "ok", "explained", "detection", "embedding"] + [
        "fuzzing",
        "skipped",
    ]
    total = next(line for line in lines if line.startswith("all "))
    assert total.split()[:8] == ["all", "13", "11", "5", "5", "2", "1", "1"]
    assert "2 too_few_negatives" in next(line for line in lines if line.startswith("[0.1, 1]"))
    assert render_coverage([]) == ""


def test_section_leaves_out_decades_without_latents(tmp_path):
    db = tmp_path / "one.duckdb"
    con = connect(db)
    con.execute("INSERT INTO collections VALUES ('c1', 'm', 'h', 's', 'd', 1, 4, 1000, 256, 32, [1.0])")
    con.execute("INSERT INTO latent_stats VALUES ('c1', 0, 'h', 5, 1000, 0.005, 1.0, 1.0, 4, [], [], 'ok', NULL)")
    con.close()
    rows = [line.split()[0] for line in coverage_section(db).splitlines()[4:]]
    assert rows == ["[1e-3,", "all"]


# --- the budget estimate ------------------------------------------------------------------------------


def test_minimum_is_min_activating_where_the_config_has_it():
    assert budget.minimum_activating(SimpleNamespace(min_activating=20, min_activating_contexts=90)) == 20
    assert budget.minimum_activating(SimpleNamespace(min_activating_contexts=90)) == 90
    config = CollectConfig(n_quantiles=10, explain_per_quantile=4, test_per_quantile=5)
    assert budget.minimum_activating(config) == (config.min_activating if hasattr(config, "min_activating") else 90)


def test_sequences_needed_scales_observed_contexts():
    # 5 contexts in 100 sequences: 20 are expected at 400; 40 contexts: already over 20 at 50
    assert budget.sequences_needed(np.array([5, 40, 1, 3]), 100, 20).tolist() == [400, 50, 2000, 667]


def test_shortfall_warns_only_above_the_share():
    # 10 live latents, exactly one under: 10% is not more than 10%
    counts = np.array([1] + [50] * 9)
    assert budget.shortfall(LiveContexts(counts, 100, 256), 20) is None
    counts = np.array([1, 4, 10, 19] + [50] * 6)
    found = budget.shortfall(LiveContexts(counts, 100, 256), 20)
    assert (found.live, found.under, found.minimum, found.tokens_read) == (10, 4, 20, 25_600)
    need = sorted(math.ceil(20 * 100 / c) for c in counts)  # [40]*6, 106, 200, 500, 2000
    # at most 1 of 10 may stay under: the 9th smallest need
    assert found.tokens_for_share == need[8] * 256 == 500 * 256
    assert found.tokens_for_all == need[-1] * 256 == 2000 * 256
    text = budget.describe(found)
    assert "4 of 10 live latents (40%)" in text and "fewer than 20 activating contexts" in text
    assert f"About {budget.round_up(500 * 256):,} tokens" in text and "--tokens" in text
    assert "assumes the rest of the corpus is like the part read" in text
    assert "larger corpus" in budget.describe(found, whole_corpus=True)
    assert budget.shortfall(LiveContexts(np.array([], dtype=np.int64), 100, 256), 20) is None
    # 30 live latents: 3 under is 10% (0.1 * 30 is 3.0000000000000004 in floating point), 4 is more
    assert budget.shortfall(LiveContexts(np.array([1] * 3 + [50] * 27), 100, 256), 20) is None
    found = budget.shortfall(LiveContexts(np.array([1] * 4 + [50] * 26), 100, 256), 20)
    assert found.under == 4 and found.tokens_for_share == 2000 * 256  # 3 may stay under: the 4th needs 2000


def test_round_up_keeps_two_significant_digits():
    assert budget.round_up(4_512_768) == 4_600_000
    assert budget.round_up(4_500_000) == 4_500_000
    assert budget.round_up(97) == 97 and budget.round_up(0) == 0


# --- a real collect -----------------------------------------------------------------------------------


def collect_args(db, **overrides) -> list[str]:
    args = ["collect", "--db", str(db), "--quiet"]
    for key, value in {**SMALL, **overrides}.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return args


@pytest.mark.slow
def test_view_matches_a_hand_count_on_a_real_collect(collected_db, tmp_path):
    db = tmp_path / "real.duckdb"
    shutil.copy(collected_db, db)
    con = connect(db)
    try:
        ok = [
            r[0]
            for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 3").fetchall()
        ]
        con.execute(
            "INSERT INTO explanation_rows (latent, config_hash, run_id, explainer, model, status, explanation, "
            "n_calls, prompt_tokens, completion_tokens, created_at) "
            "SELECT unnest(?), 'a', 'e1', 'default', 'test', 'explained', 'x', 1, 0, 0, now()",
            [ok],
        )
    finally:
        con.close()
    stats = query(db, "SELECT latent, n_firing, frequency, status, reason FROM latent_stats")
    con = connect(db, read_only=True)
    try:
        assert view_count(con) == hand_count(stats, set(ok), set())
    finally:
        con.close()
    assert {reason_class_of(s, r) for _, _, _, s, r in stats} - {None} <= {
        "dead",
        "too_few_activating",
        "too_few_negatives",
        "too_few_test",
    }  # every reason the collect writes has a class of its own


@pytest.mark.slow
def test_collect_within_budget_prints_coverage_and_no_warning(collected_db, tmp_path, capsys):
    db = tmp_path / "again.duckdb"
    shutil.copy(collected_db, db)
    assert main(collect_args(db)) == 0  # already complete: reports without running the model
    out, err = capsys.readouterr()
    assert "already complete" in out and "Coverage per decade of firing frequency" in out
    assert "warning" not in err
    live, under = query(
        db,
        "SELECT count(*), count(*) FILTER (WHERE n_active_contexts < ?) FROM latent_stats WHERE n_firing > 0",
        [budget.minimum_activating(CollectConfig(**SMALL))],
    )[0]
    assert under <= 0.1 * live


@pytest.mark.slow
def test_collect_short_of_budget_warns_with_a_token_estimate(tmp_path, capsys):
    db = tmp_path / "short.duckdb"
    big = dict(
        tokens=2048, n_quantiles=10, explain_per_quantile=4, test_per_quantile=5, reservoir=180, min_activating=20
    )
    assert main(collect_args(db, **big)) == 0
    out, err = capsys.readouterr()
    assert "Coverage per decade of firing frequency" in out
    config = CollectConfig(**{**SMALL, **big})
    minimum = budget.minimum_activating(config)
    counts = np.array([r[0] for r in query(db, "SELECT n_active_contexts FROM latent_stats WHERE n_firing > 0")])
    n_sequences, seq_len = query(db, "SELECT n_sequences, seq_len FROM collections")[0]
    under = int((counts < minimum).sum())
    assert under > 0.1 * len(counts)  # 8 sequences cannot give the minimum
    needed = sorted(math.ceil(minimum * n_sequences / c) * seq_len for c in counts)
    share = needed[len(counts) - 1 - len(counts) // 10]  # all but a tenth of the latents reach the minimum
    assert share > n_sequences * seq_len  # more than was read
    assert f"autointerp collect: warning: {under:,} of {len(counts):,} live latents" in err
    assert f"About {budget.round_up(share):,} tokens" in err
    assert f"about {budget.round_up(needed[-1]):,} none" in err
    assert "assumes the rest of the corpus is like the part read" in err
    # the summary row of the run says the same count under the minimum
    summary = json.loads(query(db, "SELECT summary FROM runs WHERE stage = 'collect'")[0][0])
    assert summary["latents"]["ok"] <= len(counts) - under
