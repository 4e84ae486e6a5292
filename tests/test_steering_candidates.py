"""The output side in ``latent_summary`` and the ``steering_candidates`` view (issue 16 item 4), on a copy of
the session's collect with the lens rows and input/output scores planted as their writers store them."""

from __future__ import annotations

import pytest

from autointerp.store import summary
from autointerp.store.db import connect

from .conftest import query, with_explanations
from .output_side import plant_lens, plant_score
from .test_query import same_as_live

pytestmark = pytest.mark.slow

TOKENS = [(100 + i, f" tok{i}", 9.0 - i) for i in range(7)]


@pytest.fixture(scope="module")
def candidates_db(collected_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("candidates") / "candidates.duckdb"
    a, b, c = with_explanations(collected_db, path, ["rivers", "dates", "code"])
    con = connect(path)
    plant_lens(con, a, promoted=TOKENS, suppressed=[(7, " neg", -3.0)])
    plant_lens(con, b, promoted=TOKENS[::-1])
    plant_lens(con, c, note="the dictionary writes to mlp.act_fn, which does not reach the residual stream")
    for latent, output, inp in ((a, 0.02, 0.3), (b, 0.4, 0.05), (c, 1e-5, 0.0)):
        plant_score(con, latent, f"imported/{latent}", "output_score", output, 1e-6)
        plant_score(con, latent, f"imported/{latent}", "input_score", inp, 2e-4)
    plant_score(con, a, f"imported/{a}", "output_choice", 1.0, 1 / 3, second=1)
    # a newer explanation of a: the explanation-bound scores go, input/output scores stay
    con.execute(
        "INSERT INTO explanation_rows VALUES (?, 'newer', 'explain-test', 'default', 'test', 'explained', "
        "'names of rivers', NULL, NULL, NULL, 0, 0, 0, now())",
        [a],
    )
    summary.refresh_latent_summary(con, [a, b, c])
    con.close()
    return path, (a, b, c)


def test_candidates_are_ranked_by_output_score_with_their_promoted_tokens(candidates_db):
    db, (a, b, c) = candidates_db
    rows = query(
        db,
        "SELECT candidate_rank, latent, output_score, output_score_chance, input_score, promoted_tokens, lens_note, "
        "explanation FROM steering_candidates ORDER BY candidate_rank",
    )
    assert [r[1] for r in rows] == [b, a, c]
    assert [r[0] for r in rows] == [1, 2, 3]
    by_latent = {r[1]: r for r in rows}
    assert by_latent[a][5] == [" tok0", " tok1", " tok2", " tok3", " tok4"]  # the first five, rank order
    assert by_latent[b][5] == [" tok6", " tok5", " tok4", " tok3", " tok2"]
    assert by_latent[c][5] is None and "does not reach the residual" in by_latent[c][6]
    assert by_latent[a][2:5] == (0.02, 1e-6, 0.3)
    assert by_latent[a][7] == "names of rivers"


def test_summary_keeps_input_and_output_scores_across_explanations(candidates_db):
    db, (a, b, _) = candidates_db
    (row,) = query(
        db,
        "SELECT explanation, input_score, input_score_chance, input_score_n, output_score, output_score_config, "
        f"output_choice_score FROM latent_summary WHERE latent = {a}",
    )
    # output_choice judged the older explanation: not shown beside the newer one
    assert row == ("names of rivers", 0.3, 2e-4, 20, 0.02, "cfg-output_score", None)
    assert query(db, f"SELECT output_score FROM latent_summary WHERE latent = {b}") == [(0.4,)]
    assert same_as_live(db)


def test_real_scorers_fill_the_candidates(collected_db, tmp_path):
    """`autointerp score --scorers input_score,output_score` on the collect: every scored latent is a candidate,
    ranked by the stored output score, with the first five promoted tokens of the collect's own lens."""
    from autointerp.cli import main

    db = tmp_path / "real.duckdb"
    latents = with_explanations(collected_db, db, ["a", "b", "c"])
    spec = ",".join(map(str, latents))
    assert main(["score", "--db", str(db), "--quiet", "--latents", spec, "--scorers", "input_score,output_score"]) == 0
    scored = dict(
        query(db, "SELECT latent, score FROM scores WHERE scorer = 'output_score' AND status = 'scored' ORDER BY 1")
    )
    rows = query(db, "SELECT latent, output_score, promoted_tokens FROM steering_candidates ORDER BY candidate_rank")
    assert [r[0] for r in rows] == sorted(scored, key=lambda lat: (-scored[lat], lat)) and scored
    for latent, output, tokens in rows:
        lens = query(
            db,
            "SELECT token FROM latent_logits WHERE latent = ? AND sign = 'promoted' AND rank < 5 ORDER BY rank",
            [latent],
        )
        assert output == scored[latent] and tokens == [t for (t,) in lens]
