"""latent_summary's choice of rows (issue 15 item 11): explicit, keyed on both the explainer and the scorer
configuration, controls paired with that pair (the intervention controls too), intervals shown. The
database is test_query's ``summary_db``; each test adds the rows that make its case."""

from __future__ import annotations

import pytest

from autointerp.interop.parquet import export_parquet
from autointerp.store import summary
from autointerp.store.db import connect

from .conftest import query
from .test_query import add_score, same_as_live, summary_db, summary_rows  # noqa: F401

pytestmark = pytest.mark.slow


def test_a_latest_scored_row_without_a_score_shows_null_not_an_older_score(summary_db):  # noqa: F811
    db, (_, b, *_) = summary_db
    con = connect(db)
    # b's detection: 0.75 (sc1, second 14); now a later scored row of another configuration whose metric is
    # undefined on its sample. arg_max(score, created_at) skipped the NULL and showed 0.75 of sc1.
    add_score(con, b, f"old/{b}", "detection", None, 60, config="sc2")
    summary.refresh_latent_summary(con, [b])
    con.close()
    row = summary_rows(db, [b])[b]
    assert (row["detection_score"], row["detection_config"], row["detection_auroc"]) == (None, "sc2", None)
    assert same_as_live(db)


def test_intervention_controls_are_paired_with_the_shown_configurations(summary_db):  # noqa: F811
    db, (a, b, c, _) = summary_db
    con = connect(db)
    # a's intervention scorers are shown with scorer configuration sc1 and explainer configuration 'new'.
    add_score(con, a, f"new/{b}", "intervention", 0.51, 61, control="shuffled")  # paired: shown
    add_score(con, a, f"new/{c}", "intervention", 0.9, 60, control="shuffled")  # older: not shown
    add_score(con, a, f"old/{b}", "intervention_choice", 0.2, 62, control="shuffled")  # other explainer
    add_score(con, a, f"new/{b}", "intervention_surprisal", -0.1, 63, config="sc9", control="shuffled")  # other scorer
    add_score(con, a, f"new/{b}", "intervention_surprisal", 0.01, 59, control="shuffled")  # paired: shown
    summary.refresh_latent_summary(con, [a])
    con.close()
    row = summary_rows(db, [a])[a]
    assert (row["intervention_control"], row["intervention_choice_control"], row["intervention_surprisal_control"]) == (
        0.51,
        None,
        0.01,
    )
    assert row["intervention_config"] == row["intervention_surprisal_config"] == "sc1"
    assert str(row["scored_at"]) == "2025-03-01 00:01:01"  # the latest shown row: the paired control
    assert same_as_live(db)


def test_scores_and_summary_export_with_their_intervals(summary_db, tmp_path):  # noqa: F811
    db, (a, *_) = summary_db
    result = export_parquet(db, tmp_path / "out")
    scores = query(
        db,
        f"SELECT ci_low, ci_high, n_examples FROM read_parquet('{result.files['scores']}') "
        f"WHERE latent = {a} AND scorer = 'detection' AND config_hash = 'sc2' AND control = ''",
    )
    assert scores == [(0.6, 0.8, 10)]
    shown = query(
        db,
        f"SELECT detection_score, detection_ci_low, detection_ci_high, detection_n FROM "
        f"read_parquet('{result.files['latent_summary']}') WHERE latent = {a}",
    )
    assert shown == [(0.7, 0.6, 0.8, 10)]
