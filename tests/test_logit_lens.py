"""The stored logit lens: which tokens each latent's decoder direction promotes and suppresses
(collect/logit_lens.py, store/logit_lens.py, `autointerp lens`, view latent_logits)."""

from __future__ import annotations

import os
import shutil

import duckdb
import pyarrow as pa
import pytest
import torch

from autointerp.cli import main
from autointerp.collect.logit_lens import PLANTED_NOTE, compute_logit_lens, store_logit_lens
from autointerp.config import CollectConfig
from autointerp.errors import AutointerpError
from autointerp.models.dictionaries import LinearDictionary, NeuronDictionary, PlantedAppended, load_planted
from autointerp.models.logit_lens import unembedding_of
from autointerp.store import runs
from autointerp.store.db import connect
from autointerp.store.logit_lens import lens_note, lens_tokens, lens_tokens_of, write_logit_lens

from .test_collect_e2e import documented_columns

WIDTH = 576  # the embedded model's d_model
LAYER = "model.layers.14"


def linear(directions: torch.Tensor, **where) -> LinearDictionary:
    """A dictionary whose decoder rows are ``directions`` (its encoder is never used by the lens)."""
    n, width = directions.shape
    return LinearDictionary(
        W_enc=torch.zeros(width, n),
        b_enc=torch.zeros(n),
        W_dec=directions,
        b_dec=torch.zeros(width),
        activation="relu",
        **where,
    )


@pytest.fixture(scope="module")
def subject():
    from autointerp.models.subject import load_subject_model

    return load_subject_model("embedded", "", "cpu", "float32")


def self_ranking_tokens(unembedding, n: int) -> list[int]:
    """Tokens t whose own unembedding row has the largest product with W_U[t] (argmax_s W_U[s].W_U[t] == t).
    Not every token qualifies (another row may project further onto W_U[t]), so the test picks those."""
    weight = unembedding.weight.float()
    candidates = torch.arange(1000, 1200)
    best = (weight[candidates] @ weight.T).argmax(dim=1)
    chosen = candidates[best == candidates].tolist()
    assert len(chosen) >= n
    return chosen[:n]


@pytest.mark.slow
def test_a_planted_unembedding_row_ranks_its_token_first_and_its_negation_last(subject, tmp_path):
    unembedding = unembedding_of(subject)
    tokens = self_ranking_tokens(unembedding, 3)
    gain = unembedding.norm.weight.detach().float()
    # through the final RMSNorm (the spec applies it): norm(W_U[t] / g) is W_U[t] scaled by a positive number
    rows = unembedding.weight.float()[tokens] / gain
    dictionary = linear(torch.cat([rows, -rows]), hookpoint=LAYER)
    lens = compute_logit_lens(subject, dictionary, k=5, chunk_size=2)
    got = lens.rows.to_pylist()
    assert lens.ranked == 6 and not lens.notes and len(got) == 6 * 2 * 5
    for i, token in enumerate(tokens):
        promoted = [r for r in got if r["latent"] == i and r["sign"] == "promoted"]
        suppressed = [r for r in got if r["latent"] == 3 + i and r["sign"] == "suppressed"]
        assert promoted[0]["token_id"] == token and promoted[0]["rank"] == 0
        assert suppressed[0]["token_id"] == token and suppressed[0]["rank"] == 0
        assert promoted[0]["token"] == subject.tokenizer.decode([token])
        with torch.no_grad():
            expected = float(unembedding.logits(rows[i : i + 1])[0, token])
        assert promoted[0]["value"] == pytest.approx(expected, rel=1e-5)
        assert [r["value"] for r in promoted] == sorted((r["value"] for r in promoted), reverse=True)
    # and stored, read back through the view
    con = connect(tmp_path / "lens.duckdb")
    run_id = complete_collect_run(con)
    summary = store_logit_lens(con, subject, dictionary, run_id, k=5)
    assert summary["ranked"] == 6 and summary["noted"] == 0
    assert lens_tokens(con, 0, k=1) == [(tokens[0], promoted_of(got, 0)["token"], pytest.approx(got[0]["value"]))]
    assert lens_tokens(con, 3, "suppressed", k=1)[0][0] == tokens[0]
    assert lens_note(con, 0) is None


def promoted_of(rows, latent):
    return next(r for r in rows if r["latent"] == latent and r["sign"] == "promoted")


@pytest.mark.slow
def test_chunked_equals_unchunked(subject):
    directions = torch.randn(11, WIDTH, generator=torch.Generator().manual_seed(0))
    dictionary = linear(directions, hookpoint=LAYER)
    small = compute_logit_lens(subject, dictionary, k=7, chunk_size=3).rows
    whole = compute_logit_lens(subject, dictionary, k=7, chunk_size=64).rows
    assert small.num_rows == 11 * 2 * 7
    for column in ("latent", "sign", "rank", "token_id", "token", "note"):
        assert small.column(column).to_pylist() == whole.column(column).to_pylist()
    assert small.column("value").to_pylist() == pytest.approx(whole.column("value").to_pylist(), rel=1e-5)


@pytest.mark.slow
def test_transcoders_and_neurons_write_the_residual_stream_elsewhere_a_note(subject):
    directions = torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(1))
    mlp = "model.layers.3.mlp"
    transcoder = linear(directions, hookpoint=mlp, hookpoint_out=mlp, reads="input")
    lens = compute_logit_lens(subject, transcoder, k=3)
    assert lens.ranked == 4 and not lens.notes

    down = dict(subject.model.named_modules())[f"{mlp}.down_proj"]
    neurons = NeuronDictionary(down.weight.detach().T[:6].clone(), f"{mlp}.down_proj")
    lens = compute_logit_lens(subject, neurons, k=3)
    assert lens.ranked == 6 and not lens.notes
    expected = unembedding_of(subject).logits(down.weight.detach().T[5:6]).topk(3).indices[0].tolist()
    assert [r["token_id"] for r in lens.rows.to_pylist() if r["latent"] == 5 and r["sign"] == "promoted"] == expected

    unsaid = linear(directions, hookpoint=mlp, reads="input")  # a transcoder that does not say where it writes
    lens = compute_logit_lens(subject, unsaid, k=3)
    assert lens.ranked == 0 and lens.rows.num_rows == 4
    assert "hookpoint_out" in lens.notes[0]
    inner = linear(torch.randn(4, 1536), hookpoint=f"{mlp}.act_fn")  # inside the MLP, before down_proj
    lens = compute_logit_lens(subject, inner, k=3)
    note_rows = lens.rows.to_pylist()
    assert len(note_rows) == 4 and all(r["sign"] is None and r["token_id"] is None for r in note_rows)
    assert "not the residual stream" in note_rows[0]["note"]


@pytest.mark.slow
def test_planted_latents_get_a_note_row(subject):
    base = linear(torch.randn(3, WIDTH, generator=torch.Generator().manual_seed(2)), hookpoint=LAYER)
    planted = load_planted("data/planted_example.json")
    lens = compute_logit_lens(subject, PlantedAppended(base, planted), k=2)
    rows = lens.rows.to_pylist()
    assert lens.ranked == 3 and len(rows) == 3 * 4 + planted.d_sae
    notes = [r for r in rows if r["note"] is not None]
    assert [r["latent"] for r in notes] == list(range(3, 3 + planted.d_sae))
    assert {r["note"] for r in notes} == {PLANTED_NOTE}


@pytest.mark.slow
def test_collect_stores_2k_rows_per_latent(collected_db):
    con = duckdb.connect(str(collected_db), read_only=True)
    columns = [r[0] for r in con.execute("DESCRIBE latent_logits").fetchall()]
    assert columns == documented_columns("latent_logits")
    n_latents = con.execute("SELECT n_latents FROM collections").fetchone()[0]
    per_latent = con.execute(
        "SELECT latent, count(*), count(DISTINCT (sign, rank)), max(rank), count(note) FROM latent_logits "
        "GROUP BY latent"
    ).fetchall()
    assert len(per_latent) == n_latents
    assert {tuple(r[1:]) for r in per_latent} == {(40, 40, 19, 0)}
    unordered = con.execute(
        "SELECT count(*) FROM (SELECT sign, value, lag(value) OVER (PARTITION BY latent, sign ORDER BY rank) AS prev "
        "FROM latent_logits) WHERE (sign = 'promoted' AND value > prev) OR (sign = 'suppressed' AND value < prev)"
    ).fetchone()[0]
    assert unordered == 0
    summary = con.execute("SELECT summary->'logit_lens'->>'ranked' FROM runs WHERE stage = 'collect'").fetchone()
    assert int(summary[0]) == n_latents


@pytest.mark.slow
def test_lens_command_fills_a_database_collected_without_it(collected_db, tmp_path, capsys):
    db = tmp_path / "old.duckdb"
    shutil.copy(collected_db, db)
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM logit_lens")
    before = con.execute("SELECT count(*) FROM latent_examples").fetchone()[0]
    con.close()
    assert main(["lens", "--db", str(db), "--k", "2", "--device", "cpu"]) == 0
    assert "latent_logits" in capsys.readouterr().out
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM latent_examples").fetchone()[0] == before
    counts = con.execute("SELECT DISTINCT count(*) FROM latent_logits GROUP BY latent").fetchall()
    assert counts == [(4,)]


def test_lens_command_refuses_bad_input_with_exit_2(tmp_path, capsys):
    assert main(["lens", "--db", str(tmp_path / "missing.duckdb")]) == 2
    assert "No database" in capsys.readouterr().err
    empty = tmp_path / "empty.duckdb"
    connect(empty).close()
    assert main(["lens", "--db", str(empty)]) == 2
    assert "no complete collect" in capsys.readouterr().err
    assert main(["lens", "--db", str(empty), "--k", "0"]) == 2
    assert "--k is 0" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_lens_command_refuses_a_read_only_database(tmp_path, capsys):
    db = tmp_path / "ro.duckdb"
    connect(db).close()
    db.chmod(0o444)
    data = db.read_bytes()
    assert main(["lens", "--db", str(db)]) == 2
    assert "read-only" in capsys.readouterr().err
    assert db.read_bytes() == data


def complete_collect_run(con) -> str:
    run_id = runs.new_run_id("collect")
    runs.start_run(con, run_id, "collect", {}, "h")
    runs.complete_run(con, run_id, {})
    return run_id


def test_stored_rows_are_replaced_per_run_and_the_view_shows_the_current_collect(tmp_path):
    con = connect(tmp_path / "a.duckdb")
    assert lens_tokens(con, 0) == [] and lens_note(con, 0) is None  # nothing stored yet
    old = complete_collect_run(con)
    write_logit_lens(con, old, table([(0, "promoted", 0, 5, "old", 1.0, None)]))
    current = complete_collect_run(con)
    rows = [(0, "promoted", r, 10 + r, f"t{r}", 3.0 - r, None) for r in range(3)]
    rows += [(0, "suppressed", 0, 99, "low", -4.0, None), (1, None, None, None, None, None, "no decoder")]
    write_logit_lens(con, current, table(rows[:1]))
    write_logit_lens(con, current, table(rows))  # replaces, not appends
    assert lens_tokens(con, 0, k=2) == [(10, "t0", 3.0), (11, "t1", 2.0)]
    assert lens_tokens(con, 0, "suppressed") == [(99, "low", -4.0)]
    assert lens_tokens(con, 1) == [] and lens_note(con, 1) == "no decoder" and lens_note(con, 0) is None
    assert lens_tokens_of(con, [0, 1, 7], k=1) == {0: [(10, "t0", 3.0)]}
    assert con.execute("SELECT count(*) FROM logit_lens").fetchone()[0] == 6  # the old run's row is kept ...
    assert con.execute("SELECT count(*) FROM latent_logits").fetchone()[0] == 5  # ... but not shown
    with pytest.raises(ValueError, match="sign"):
        lens_tokens(con, 0, "both")


def table(rows) -> pa.Table:
    names = ["latent", "sign", "rank", "token_id", "token", "value", "note"]
    return pa.table({name: [r[i] for r in rows] for i, name in enumerate(names)})


def test_lens_k_is_validated_and_not_part_of_the_collect_identity():
    for bad in (-1, True, 2.5):
        with pytest.raises(AutointerpError, match="--lens-k"):
            CollectConfig(lens_k=bad)
    assert (
        CollectConfig(lens_k=0).result_hash() == CollectConfig(lens_k=20).result_hash() == CollectConfig().result_hash()
    )
