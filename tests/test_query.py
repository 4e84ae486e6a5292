"""The query layer on real databases: the `latent_summary` view (latest explanation, pivoted scores,
its stored copy kept current), `autointerp sql` and the Python API `open_db`."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import sys

import duckdb
import pytest

import autointerp
from autointerp.cli import main
from autointerp.errors import AutointerpError
from autointerp.query import render
from autointerp.store import summary
from autointerp.store.db import connect, migrations

from .conftest import query
from .test_collect_e2e import documented_columns

T = "TIMESTAMP '2025-03-01 00:00:00' + INTERVAL (?) SECOND"


def add_explanation(con, latent, chash, status, text, second):
    con.execute(
        f"INSERT INTO explanation_rows (latent, config_hash, run_id, explainer, model, status, explanation, "
        f"reason, n_calls, prompt_tokens, completion_tokens, created_at) VALUES (?, ?, 'explain-test', "
        f"'default', ?, ?, ?, ?, 1, 100, 10, {T})",
        [
            latent,
            chash,
            f"model-{chash}",
            status,
            text if status == "explained" else None,
            None if status == "explained" else "no [EXPLANATION] line",
            second,
        ],
    )


def add_score(
    con,
    latent,
    explanation_id,
    scorer,
    score,
    second,
    config="sc1",
    control="",
    status="scored",
    auroc=None,
    ci=(None, None),
):
    con.execute(
        f"INSERT INTO score_rows (latent, explanation_id, scorer, model, config_hash, control, run_id, status, "
        f"n_examples, n_unscored, chance, n_calls, prompt_tokens, completion_tokens, fixed_prompt_tokens, "
        f"score, auroc, ci_low, ci_high, created_at) VALUES (?, ?, ?, 'judge', ?, ?, 'score-test', ?, 10, 0, "
        f"'{{\"score\": 0.5}}', 1, 100, 5, 50, ?, ?, ?, ?, {T})",
        [latent, explanation_id, scorer, config, control, status, score, auroc, *ci, second],
    )


@pytest.fixture
def summary_db(collected_db, tmp_path):
    """A copy of the session's collect database with explanations and scores written for four latents:

    a: three explanation rows (old explained, new explained, a later failed retry of a third config),
       scores for both explanations, two detection configurations, an unscored later row, every scorer,
       and shuffled controls (of the shown configuration pair, of a stale scorer configuration and of another
       explainer configuration); b: one explanation, one detection score with AUROC; c: only an unparsed
       answer; d: nothing.
    """
    path = tmp_path / "summary.duckdb"
    shutil.copy(collected_db, path)
    con = connect(path)
    a, b, c, d = [
        r[0] for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 4").fetchall()
    ]
    add_explanation(con, a, "old", "explained", "rivers", 1)
    add_explanation(con, a, "new", "explained", "names of rivers and lakes", 2)
    add_explanation(con, a, "retry", "failed", None, 3)
    add_explanation(con, b, "old", "explained", "dates", 1)
    add_explanation(con, c, "old", "unparsed", None, 1)
    add_score(con, a, f"old/{a}", "detection", 0.95, 10)  # the older explanation: not shown
    add_score(con, a, f"new/{a}", "detection", 0.60, 11, config="sc1")
    add_score(con, a, f"new/{a}", "detection", 0.70, 12, config="sc2", ci=(0.6, 0.8))  # latest configuration wins
    add_score(con, a, f"new/{a}", "detection", None, 13, config="sc3", status="unscored")  # skipped
    for i, (scorer, value) in enumerate(
        [
            ("fuzzing", 0.8),
            ("embedding", 0.65),
            ("simulation", 0.3),
            ("intervention", 0.55),
            ("intervention_choice", 0.4),
            ("intervention_surprisal", 0.12),
        ]
    ):
        add_score(con, a, f"new/{a}", scorer, value, 20 + i)
    add_score(con, a, f"new/{b}", "detection", 0.53, 29, config="sc2", control="shuffled")  # paired with sc2
    add_score(con, a, f"new/{b}", "detection", 0.52, 30, control="shuffled")  # sc1: not the shown configuration
    add_score(con, a, f"old/{b}", "detection", 0.45, 32, config="sc2", control="shuffled")  # other explainer
    add_score(con, a, f"new/{b}", "fuzzing", 0.49, 31, control="shuffled")
    add_score(con, b, f"old/{b}", "detection", 0.75, 14, auroc=0.8)
    summary.refresh_latent_summary(con, [a, b, c, d])
    con.close()
    return path, (a, b, c, d)


def summary_rows(db, latents):
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute(
            "SELECT * FROM latent_summary WHERE latent IN (SELECT unnest(?)) ORDER BY latent", [list(latents)]
        )
        names = [x[0] for x in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    finally:
        con.close()


def same_as_live(db) -> bool:
    return (
        query(
            db,
            "SELECT count(*) FROM ((SELECT * FROM latent_summary EXCEPT ALL SELECT * FROM "
            "latent_summary_live) UNION ALL (SELECT * FROM latent_summary_live EXCEPT ALL "
            "SELECT * FROM latent_summary))",
        )[0][0]
        == 0
    )


# ---- latent_summary -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("view", ["latent_summary", "latent_summary_live"])
def test_latent_summary_has_exactly_the_documented_columns(collected_db, view):
    columns = [r[0] for r in query(collected_db, f"DESCRIBE {view}")]
    assert columns == documented_columns("latent_summary")


def test_migration_stores_the_fingerprint_summary_py_checks(tmp_path):
    con = connect(tmp_path / "fresh.duckdb")
    assert summary.has_summary(con) and summary.is_current(con)
    con.close()


@pytest.mark.slow
def test_latest_explanation_and_one_column_per_scorer(summary_db):
    db, (a, b, c, d) = summary_db
    rows = summary_rows(db, [a, b, c, d])
    ra = rows[a]
    assert (ra["explanation"], ra["explanation_id"], ra["explainer"], ra["explainer_model"]) == (
        "names of rivers and lakes",
        f"new/{a}",
        "default",
        "model-new",
    )
    assert ra["n_explanations"] == 2 and ra["explanation_status"] == "explained"
    assert str(ra["explained_at"]) == "2025-03-01 00:00:02"
    assert ra["detection_score"] == 0.70  # new explanation, latest scored configuration
    assert (
        ra["fuzzing_score"],
        ra["embedding_score"],
        ra["simulation_score"],
        ra["intervention_score"],
        ra["intervention_choice_score"],
        ra["intervention_surprisal_score"],
    ) == (0.8, 0.65, 0.3, 0.55, 0.4, 0.12)
    assert (ra["detection_control"], ra["fuzzing_control"]) == (0.53, 0.49)
    assert (ra["detection_config"], ra["detection_ci_low"], ra["detection_ci_high"], ra["detection_n"]) == (
        "sc2",
        0.6,
        0.8,
        10,
    )
    assert str(ra["scored_at"]) == "2025-03-01 00:00:31"  # the latest shown row, here a control
    rb = rows[b]
    assert (
        rb["explanation"],
        rb["detection_score"],
        rb["detection_auroc"],
        rb["fuzzing_score"],
        rb["detection_control"],
    ) == ("dates", 0.75, 0.8, None, None)
    rc = rows[c]
    assert (rc["explanation"], rc["explanation_status"], rc["n_explanations"], rc["detection_score"]) == (
        None,
        "unparsed",
        0,
        None,
    )
    rd = rows[d]
    assert (rd["explanation"], rd["explanation_status"], rd["n_explanations"], rd["scored_at"]) == (None, None, 0, None)
    # Statistics are those of `latents`, and every latent has a row.
    stats = query(
        db,
        "SELECT latent, hookpoint, status, frequency, n_firing, max_activation, mean_activation, "
        "n_active_contexts FROM latents ORDER BY latent",
    )
    mine = query(
        db,
        "SELECT latent, hookpoint, status, frequency, n_firing, max_activation, mean_activation, "
        "n_active_contexts FROM latent_summary ORDER BY latent",
    )
    assert mine == stats
    assert same_as_live(db)


@pytest.mark.slow
def test_a_refresh_catches_up_rows_an_earlier_run_did_not_refresh(summary_db):
    db, (_, b, _, d) = summary_db
    con = connect(db)
    add_score(con, b, f"old/{b}", "fuzzing", 0.66, 40)  # written, never refreshed (a crashed run)
    assert not summary.is_current(con)
    add_explanation(con, d, "new", "explained", "punctuation", 41)
    n = summary.refresh_latent_summary(con, [d])  # the next run names only its own latent
    # b, d, and a, whose latest row has the watermark's timestamp (>= so that ties are never missed)
    assert n == 3 and summary.is_current(con)
    con.close()
    rows = summary_rows(db, [b, d])
    assert rows[b]["fuzzing_score"] == 0.66 and rows[d]["explanation"] == "punctuation"
    assert same_as_live(db)


@pytest.mark.slow
def test_deleted_rows_refresh_every_latent(summary_db):
    db, (a, *_) = summary_db
    con = connect(db)
    con.execute("DELETE FROM explanation_rows WHERE latent = ? AND config_hash = 'new'", [a])
    n_latents = con.execute("SELECT count(*) FROM latents").fetchone()[0]
    assert summary.refresh_latent_summary(con, []) == n_latents  # cannot tell which: every latent
    con.close()
    row = summary_rows(db, [a])[a]
    assert row["explanation"] == "rivers" and row["detection_score"] == 0.95  # back to the old explanation
    assert same_as_live(db)


@pytest.mark.slow
def test_a_stale_summary_is_read_live_and_refreshed_by_a_write(summary_db, capsys):
    db, (_, b, *_) = summary_db
    con = connect(db)
    add_score(con, b, f"old/{b}", "detection", 0.91, 50, config="sc2")
    con.close()
    with autointerp.open_db(db) as handle:
        assert handle.summary_is_live
        value = handle.df(f"SELECT detection_score FROM latent_summary WHERE latent = {b}").iloc[0, 0]
    assert value == 0.91  # current although the stored copy is not
    sql = f"SELECT detection_score FROM latent_summary WHERE latent = {b}"
    assert main(["sql", "--db", str(db), "--format", "csv", sql]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[1] == "0.91" and "out of date" in out.err
    assert main(["sql", "--db", str(db), "--write", "CHECKPOINT"]) == 0
    con = duckdb.connect(str(db), read_only=True)
    assert summary.is_current(con)
    assert con.execute("SELECT detection_score FROM latent_summary_rows WHERE latent = ?", [b]).fetchone()[0] == 0.91
    con.close()


# ---- autointerp sql -----------------------------------------------------------------------------------


def run_sql(capsys, db, *args):
    code = main(["sql", "--db", str(db), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_table_output_is_aligned(collected_db, capsys):
    code, out, _ = run_sql(
        capsys,
        collected_db,
        "SELECT latent, status, frequency, n_firing FROM latents ORDER BY n_firing DESC, latent LIMIT 5",
    )
    assert code == 0
    lines = out.splitlines()
    header, rule, body, footer = lines[0], lines[1], lines[2:7], lines[7]
    assert header.split() == ["latent", "status", "frequency", "n_firing"] and footer == "(5 rows)"
    spans, pos = [], 0
    for dashes in rule.split("  "):
        spans.append((pos, pos + len(dashes)))
        pos += len(dashes) + 2
    assert len(spans) == 4
    expected = query(
        collected_db, "SELECT latent, status, frequency, n_firing FROM latents ORDER BY n_firing DESC, latent LIMIT 5"
    )
    for line, row in zip(body, expected, strict=True):
        cells = [line[lo:hi] for lo, hi in spans]
        for i, (_lo, hi) in enumerate(spans[:-1]):  # two spaces between columns on every line
            assert line[hi : spans[i + 1][0]] == "  "
        assert cells[0] == str(row[0]).rjust(spans[0][1] - spans[0][0])  # numbers right-aligned
        assert cells[1].rstrip() == row[1] and not cells[1].startswith(" ")  # text left-aligned
        assert math.isclose(float(cells[2]), row[2], rel_tol=1e-5) and int(cells[3]) == row[3]


@pytest.mark.slow
def test_table_cuts_long_values_and_says_so(collected_db, capsys):
    sql = "SELECT latent, tokens FROM examples ORDER BY latent, context_id LIMIT 3"
    code, out, _ = run_sql(capsys, collected_db, "--max-width", "20", sql)
    assert code == 0
    lines = out.splitlines()
    width = len(lines[1].split("  ")[1])
    assert width <= 20 and all(line.rstrip().endswith(render.ELLIPSIS) for line in lines[2:5])
    assert "--max-width 0" in lines[-1]
    code, out, _ = run_sql(capsys, collected_db, "--max-width", "0", sql)
    tokens = query(collected_db, sql)[0][1]
    assert json.dumps(tokens[0], ensure_ascii=False) in out.splitlines()[2]  # whole, with its quotes
    assert "--max-width" not in out and render.ELLIPSIS not in out
    code, out, _ = run_sql(capsys, collected_db, "--max-rows", "2", "SELECT latent FROM latents")
    assert len(out.splitlines()) == 5 and "--max-rows 0" in out.splitlines()[-1]


@pytest.mark.slow
def test_csv_parses_back(collected_db, capsys):
    sql = "SELECT latent, frequency, mean_activation, status, reason, histogram FROM latents ORDER BY latent"
    code, out, _ = run_sql(capsys, collected_db, "--format", "csv", sql)
    assert code == 0
    parsed = list(csv.DictReader(io.StringIO(out)))
    expected = query(collected_db, sql)
    assert len(parsed) == len(expected) > 0
    for got, row in zip(parsed, expected, strict=True):
        assert int(got["latent"]) == row[0] and float(got["frequency"]) == row[1]
        assert got["mean_activation"] == ("" if row[2] is None else got["mean_activation"])
        assert got["status"] == row[3] and got["reason"] == (row[4] or "")
        assert json.loads(got["histogram"]) == row[5]


@pytest.mark.slow
def test_json_and_jsonl_parse_back(summary_db, capsys):
    db, (a, *_) = summary_db
    sql = (
        f"SELECT latent, explanation_id, scorer, score, chance, created_at FROM scores WHERE latent = {a} "
        "ORDER BY created_at"
    )
    expected = query(db, sql)
    code, out, _ = run_sql(capsys, db, "--format", "json", sql)
    assert code == 0
    records = json.loads(out)
    assert [r["score"] for r in records] == [row[3] for row in expected]
    assert records[0]["chance"] == {"score": 0.5}  # a JSON column is the document, not its text
    assert records[0]["created_at"] == expected[0][5].isoformat()
    code, out, _ = run_sql(capsys, db, "--format", "jsonl", sql)
    assert [json.loads(line) for line in out.splitlines()] == records
    code, out, _ = run_sql(capsys, db, "--format", "json", "SELECT 1 AS x WHERE false")
    assert json.loads(out) == []


@pytest.mark.slow
def test_read_only_refuses_writes_and_leaves_the_data(summary_db, capsys):
    db, _ = summary_db
    before = query(db, "SELECT count(*) FROM latent_stats")[0][0]
    for sql in ["DELETE FROM latent_stats", "DROP VIEW latents", "SELECT 1; DELETE FROM score_rows"]:
        code, _, err = run_sql(capsys, db, sql)
        assert code == 2 and "read-only" in err and "--write" in err, sql
    assert query(db, "SELECT count(*) FROM latent_stats")[0][0] == before > 0
    assert query(db, "SELECT count(*) FROM score_rows")[0][0] > 0
    assert query(db, "SELECT count(*) FROM latents")[0][0] == before


@pytest.mark.slow
def test_write_runs_all_or_nothing_and_refreshes_the_summary(summary_db, capsys):
    db, (_, b, *_) = summary_db
    code, _, err = run_sql(
        capsys, db, "--write", f"DELETE FROM score_rows WHERE latent = {b}; SELECT * FROM no_such_table"
    )
    assert code == 2 and "no_such_table" in err
    assert query(db, "SELECT count(*) FROM score_rows WHERE latent = ?", [b])[0][0] == 1  # rolled back
    code, _, err = run_sql(capsys, db, "--write", f"DELETE FROM score_rows WHERE latent = {b}")
    assert code == 0 and query(db, "SELECT count(*) FROM score_rows WHERE latent = ?", [b])[0][0] == 0
    assert summary_rows(db, [b])[b]["detection_score"] is None and same_as_live(db)


@pytest.mark.slow
def test_bad_sql_missing_db_and_empty_query_exit_2(collected_db, tmp_path, capsys, monkeypatch):
    code, _, err = run_sql(capsys, collected_db, "SELEC latent FROM latents")
    assert code == 2 and "Parser Error" in err and "syntax error" in err
    code, _, err = run_sql(capsys, collected_db, "SELECT nope FROM latents")
    assert code == 2 and "nope" in err
    missing = tmp_path / "missing.duckdb"
    for extra in ([], ["--write"]):
        code, _, err = run_sql(capsys, missing, *extra, "SELECT 1")
        assert code == 2 and "No database at" in err and not missing.exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("  \n"))
    code, _, err = run_sql(capsys, collected_db, "-")
    assert code == 2 and "empty" in err


@pytest.mark.slow
def test_query_from_stdin(collected_db, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT count(*) AS n FROM latents WHERE status = 'ok'\n"))
    code, out, _ = run_sql(capsys, collected_db, "--format", "csv", "-")
    assert code == 0
    assert out.splitlines() == ["n", str(query(collected_db, "SELECT count(*) FROM latents WHERE status = 'ok'")[0][0])]


def test_old_schema_read_only_says_how_to_upgrade(tmp_path, capsys):
    path = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
    for version, name, sql in migrations():
        if version < 5:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
    con.close()
    code, _, err = run_sql(capsys, path, "SELECT * FROM latent_summary")
    assert code == 2 and "schema version" in err and "--write" in err
    assert run_sql(capsys, path, "--write", "CHECKPOINT")[0] == 0  # upgrades it
    assert run_sql(capsys, path, "SELECT count(*) FROM latent_summary")[0] == 0


# ---- Python API ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_open_db_gives_relations_dataframes_and_arrow_tables(summary_db):
    db, (a, *_) = summary_db
    with autointerp.open_db(db) as handle:
        assert isinstance(handle, autointerp.Database) and isinstance(handle.con, duckdb.DuckDBPyConnection)
        assert (
            handle.sql("SELECT count(*) FROM latents").fetchall()[0][0]
            == query(db, "SELECT count(*) FROM latents")[0][0]
        )
        assert handle.sql("SELECT latent FROM latents WHERE latent = ?", params=[a]).fetchall() == [(a,)]
        frame = handle.df("latent_summary")
        assert list(frame.columns) == documented_columns("latent_summary") and len(frame) > 4
        assert frame.set_index("latent").loc[a, "detection_score"] == 0.70
        table = handle.arrow("SELECT latent, explanation FROM latent_summary WHERE latent = ?", [a])
        assert table.num_rows == 1 and table.column("explanation").to_pylist() == ["names of rivers and lakes"]
        assert table.schema.field("latent").type == "int32"
        views = handle.views()
        for view in [
            "latents",
            "examples",
            "explanations",
            "scores",
            "score_examples",
            "interventions",
            "latent_summary",
            "latent_summary_live",
        ]:
            assert view in views
        with pytest.raises(AutointerpError, match="read-only"):
            handle.df("DELETE FROM latent_stats")
        with pytest.raises(AutointerpError, match="No view or table named 'nope'"):
            handle.df("nope")
        with pytest.raises(AutointerpError, match="Parser Error"):
            handle.sql("SELEC 1")
    with pytest.raises(duckdb.ConnectionException):
        handle.con.execute("SELECT 1")
    assert query(db, "SELECT count(*) FROM latent_stats")[0][0] == len(frame)
    with pytest.raises(AutointerpError, match="No database at"):
        autointerp.open_db(db.parent / "missing.duckdb")


# ---- rendering ----------------------------------------------------------------------------------------


def test_cells_truncate_by_terminal_width_and_escape_control_characters():
    assert render.display_width("日本") == 4 and render.display_width("e\u0301") == 1
    assert render.truncate("日本語のテキスト", 7) == ("日本語" + render.ELLIPSIS, True)
    assert render.truncate("short", 10) == ("short", False)
    assert render.cell_text("a\nb\tc") == "a\\nb\\tc"
    assert render.cell_text([" the", "river"]) == '[" the", "river"]'
    assert render.cell_text(None) == "NULL" and render.cell_text(float("nan")) == "nan"
    assert render.json_value(float("nan")) is None and render.json_value('{"a": 1}', "JSON") == {"a": 1}
