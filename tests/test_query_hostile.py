"""Read-only must mean read-only, and --write must never report a change that did not happen."""

from __future__ import annotations

import os

import duckdb
import pytest

from autointerp.browse.source import Database as BrowserDatabase
from autointerp.cli import main
from autointerp.query.api import open_db
from autointerp.store.db import connect

from .conftest import query


@pytest.fixture
def two_dbs(tmp_path):
    """An empty autointerp database with one run row, and another one beside it."""
    paths = []
    for name in ("main.duckdb", "other.duckdb"):
        path = tmp_path / name
        con = connect(path)
        con.execute(
            "INSERT INTO runs (run_id, stage, config, config_hash, status, started_at) "
            "VALUES ('r1', 'collect', '{}', 'h', 'complete', now())"
        )
        con.close()
        paths.append(path)
    return paths


def run_sql(capsys, db, *args):
    code = main(["sql", "--db", str(db), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def attacks(tmp_path, other, link):
    return [
        f"COPY (SELECT 'x') TO '{other}' (FORMAT csv)",
        f"COPY (SELECT 'x') TO '{tmp_path / 'new.csv'}' (FORMAT csv)",
        f"ATTACH '{other}' AS o (READ_WRITE); DELETE FROM o.runs",
        f"ATTACH '{link}' AS o (READ_WRITE); UPDATE o.runs SET status = 'changed'",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
    ]


def test_sql_without_write_cannot_write_anywhere(two_dbs, tmp_path, capsys):
    db, other = two_dbs
    link = tmp_path / "link.duckdb"
    os.link(db, link)
    before = other.read_bytes()
    for sql in attacks(tmp_path, other, link):
        code, _, err = run_sql(capsys, db, sql)
        assert code == 2, sql
    assert other.read_bytes() == before and not (tmp_path / "new.csv").exists()
    assert query(db, "SELECT status FROM runs") == [("complete",)]
    code, out, _ = run_sql(capsys, db, "--format", "csv", "SELECT count(*) AS n FROM latents")
    assert code == 0 and out.splitlines() == ["n", "0"]  # the views still read


def test_open_db_and_the_browser_cannot_write_anywhere(two_dbs, tmp_path):
    db, other = two_dbs
    link = tmp_path / "link.duckdb"
    os.link(db, link)
    before = other.read_bytes()
    browser = BrowserDatabase(db)
    with open_db(db) as opened:
        for con in (opened.con, browser.cursor()):
            for sql in attacks(tmp_path, other, link):
                with pytest.raises(duckdb.Error):
                    con.execute(sql)
            assert con.execute("SELECT count(*) FROM latents").fetchall() == [(0,)]
    browser.close()
    assert other.read_bytes() == before and not (tmp_path / "new.csv").exists()
    assert query(db, "SELECT status FROM runs") == [("complete",)]


def test_write_refuses_a_transaction_left_open(two_dbs, capsys):
    db, _ = two_dbs
    for sql in ["BEGIN; DELETE FROM runs;", "BEGIN TRANSACTION; DELETE FROM runs; COMMIT; BEGIN; DELETE FROM runs"]:
        code, out, err = run_sql(capsys, db, "--write", sql)
        assert code == 2 and "open" in err and "COMMIT" in err and out == "", sql
    assert query(db, "SELECT count(*) FROM runs") == [(1,)]
    code, out, _ = run_sql(capsys, db, "--write", "BEGIN; DELETE FROM runs; COMMIT;")
    assert code == 0 and query(db, "SELECT count(*) FROM runs") == [(0,)]
