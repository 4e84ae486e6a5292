"""`autointerp explain --explainer vocabproj | tokenchange | ensemble` end to end on a copy of the collected
embedded database, the explainer answering through a real HTTP server: rows for every latent, a latent whose
lens does not apply fails vocabproj with the lens's reason (and costs no call) but is explained by ensemble
from the rest, and the token change is computed once and reused by a later run with the same settings."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from autointerp.cli import main

from .conftest import query
from .openai_server import ModelServer

pytestmark = pytest.mark.slow
NOTE = "the dictionary writes model.layers.14.mlp.act_fn, which does not reach the residual stream"
CHANGE = ["--change-windows", "4", "--change-window-len", "16", "--output-tokens", "5"]


@pytest.fixture
def db(collected_db, tmp_path):
    path = tmp_path / "output.duckdb"
    shutil.copy(collected_db, path)
    return path


def ok_latents(db, n: int) -> list[int]:
    return [r[0] for r in query(db, "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT ?", [n])]


def give_note(db, latent: int) -> None:
    """Make ``latent``'s stored lens a note row, as the lens stores it for a latent it does not apply to."""
    con = duckdb.connect(str(db))
    try:
        run_id = con.execute("SELECT run_id FROM logit_lens WHERE latent = ? LIMIT 1", [latent]).fetchone()[0]
        con.execute("DELETE FROM logit_lens WHERE latent = ?", [latent])
        con.execute("INSERT INTO logit_lens (run_id, latent, note) VALUES (?, ?, ?)", [run_id, latent, NOTE])
    finally:
        con.close()


def explain(db, server, explainer: str, latents: list[int], *extra: str) -> int:
    args = ["explain", "--db", str(db), "--quiet", "--backend", "openai", "--model", "smollm2"]
    args += ["--base-url", server.base_url, "--max-tokens", "8", "--n-examples", "3"]
    return main([*args, "--explainer", explainer, "--latents", ",".join(map(str, latents)), *extra])


def latest_summary(db) -> dict:
    return json.loads(query(db, "SELECT summary FROM runs WHERE stage = 'explain' ORDER BY started_at DESC")[0][0])


def test_output_centric_explainers_end_to_end(db, local_backend):
    *shown, noted = ok_latents(db, 3)
    give_note(db, noted)
    with ModelServer(local_backend) as server:
        # exit 1: a latent failed (the noted one)
        assert explain(db, server, "vocabproj", [*shown, noted], "--output-tokens", "5") == 1
        rows = query(db, "SELECT latent, status, reason FROM explanations WHERE explainer = 'vocabproj' ORDER BY 1")
        assert [(r[0], r[1] in ("explained", "unparsed")) for r in rows[:2]] == [(lat, True) for lat in shown]
        assert rows[2][:2] == (noted, "failed") and NOTE in rows[2][2]
        calls = dict(query(db, "SELECT item, messages FROM llm_calls"))
        assert sorted(calls) == sorted(f"latent {lat}" for lat in shown)  # the noted latent cost no call
        lens = [
            r[0]
            for r in query(
                db,
                "SELECT token FROM latent_logits WHERE latent = ? AND sign = 'promoted' ORDER BY rank LIMIT 5",
                [shown[0]],
            )
        ]
        user = json.loads(calls[f"latent {shown[0]}"])[-1]["content"]
        assert all(json.dumps(t, ensure_ascii=False)[1:-1] in user for t in lens if t.isprintable())

        assert explain(db, server, "tokenchange", shown, *CHANGE) == 0
        assert latest_summary(db)["token_change"]["computed"] == 2
        stored = query(db, "SELECT latent, sign, rank, token, value, run_id, created_at FROM token_change ORDER BY ALL")
        assert len(stored) == 2 * 2 * 5 and {r[0] for r in stored} == set(shown)
        promoted = [r for r in stored if r[0] == shown[0] and r[1] == "promoted"]
        assert [r[2] for r in promoted] == list(range(5)) and promoted[0][4] >= promoted[-1][4] > 0

        # ensemble with the same settings reuses the stored token change; the noted latent has no lens
        # lists but is explained from its examples and its token change
        assert explain(db, server, "ensemble", [*shown, noted], *CHANGE) == 0
        change = latest_summary(db)["token_change"]
        assert (change["computed"], change["reused"]) == (1, 2)
        after = "SELECT latent, sign, rank, token, value, run_id, created_at FROM token_change WHERE latent != ? "
        assert query(db, after + "ORDER BY ALL", [noted]) == stored
        ensemble = query(db, "SELECT latent, status FROM explanations WHERE explainer = 'ensemble' ORDER BY 1")
        assert [(r[0], r[1] in ("explained", "unparsed")) for r in ensemble] == [(lat, True) for lat in [*shown, noted]]
        last = "SELECT messages FROM llm_calls WHERE item = ? ORDER BY call_id DESC LIMIT 1"
        user = json.loads(query(db, last, [f"latent {shown[0]}"])[0][0])[-1]["content"]
        assert "[INPUT]\nExcerpt 1:" in user and json.dumps(promoted[0][3], ensure_ascii=False)[1:-1] in user
        user = json.loads(query(db, last, [f"latent {noted}"])[0][0])[-1]["content"]
        assert 'Promoted tokens: (none)\nSuppressed tokens: (none)\nRaised when turned up: "' in user


def test_bad_output_side_settings_exit_2_and_store_nothing(db, capsys):
    before = query(db, "SELECT count(*) FROM runs")
    base = ["explain", "--db", str(db), "--quiet", "--latents", str(ok_latents(db, 1)[0])]
    assert main([*base, "--explainer", "tokenchange", "--change-scale", "0"]) == 2
    assert "--change-scale" in capsys.readouterr().err
    assert main([*base, "--explainer", "tokenchange", "--change-window-len", "1000"]) == 2
    err = capsys.readouterr().err
    assert "random contexts" in err and "--change-window-len" in err
    assert main([*base, "--explainer", "ensemble", "--output-tokens", "0"]) == 2
    assert query(db, "SELECT count(*) FROM runs") == before
    assert query(db, "SELECT count(*) FROM token_change") == [(0,)]
