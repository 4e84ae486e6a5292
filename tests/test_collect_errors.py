"""Bad input to `autointerp collect`: a clear message, exit status 2, nothing stored lost."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import duckdb
import pytest
import torch

from autointerp.cli import main
from autointerp.models.dictionaries import LinearDictionary
from autointerp.models.dictionaries.saelens import save_saelens

from .conftest import SMALL

pytestmark = pytest.mark.slow


def small_args(db, *extra) -> list[str]:
    args = ["collect", "--db", str(db), "--quiet"]
    for key, value in SMALL.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    return args + list(extra)


def run_failing(capsys, args) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def snapshot(db) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table in ("runs", "collections", "contexts", "latent_examples", "latent_stats"):
            out[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        out["checksum"] = con.execute("SELECT sum(hash(context_id, activations)) FROM latent_examples").fetchone()[0]
        out["complete"] = con.execute("SELECT run_id, config_hash FROM runs WHERE status='complete'").fetchall()
        return out
    finally:
        con.close()


@pytest.fixture
def db_copy(collected_db, tmp_path):
    path = tmp_path / "copy.duckdb"
    shutil.copy(collected_db, path)
    return path


def test_sae_input_size_differs_from_hidden_size(capsys, tmp_path):
    folder = tmp_path / "sae100"
    g = torch.Generator().manual_seed(0)
    save_saelens(
        LinearDictionary(
            W_enc=torch.randn(100, 64, generator=g),
            b_enc=torch.zeros(64),
            W_dec=torch.randn(64, 100, generator=g),
            b_dec=torch.zeros(100),
            activation="relu",
        ),
        folder,
    )
    err = run_failing(capsys, small_args(tmp_path / "a.duckdb", "--sae", str(folder)))
    assert "100" in err and "576" in err and "model.layers.14" in err


def test_hookpoint_that_does_not_exist(capsys, tmp_path):
    err = run_failing(capsys, small_args(tmp_path / "a.duckdb", "--hookpoint", "model.layer.14"))
    assert "model.layer.14" in err and "nearest names" in err and "model.layers.14" in err


def test_dataset_without_the_text_column(capsys, tmp_path):
    data = tmp_path / "corpus.jsonl"
    data.write_text("\n".join(json.dumps({"body": f"line {i}", "id": i}) for i in range(5)))
    err = run_failing(capsys, small_args(tmp_path / "a.duckdb", "--dataset", str(data)))
    assert "'text'" in err and "body" in err and "id" in err and "--text-column" in err


def test_corpus_shorter_than_requested(capsys, tmp_path):
    data = tmp_path / "short.txt"
    data.write_text("\n".join(f"This is line number {i} of a very short corpus." for i in range(200)))
    err = run_failing(capsys, small_args(tmp_path / "a.duckdb", "--dataset", str(data), "--tokens", "100000"))
    assert "has only" in err and "100,000" in err
    con = duckdb.connect(str(tmp_path / "a.duckdb"), read_only=True)
    assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    assert con.execute("SELECT count(*) FROM latent_examples").fetchone()[0] == 0


def test_local_text_file_corpus_works(tmp_path):
    data = tmp_path / "corpus.txt"
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    data.write_text("\n".join(" ".join(words[(i + j) % 10] for j in range(30)) for i in range(200)))
    db = tmp_path / "txt.duckdb"
    args = [
        "collect",
        "--db",
        str(db),
        "--quiet",
        "--dataset",
        str(data),
        "--tokens",
        "2048",
        "--n-quantiles",
        "1",
        "--explain-per-quantile",
        "1",
        "--test-per-quantile",
        "1",
        "--reservoir",
        "4",
        "--top-k",
        "2",
        "--random-explain",
        "1",
        "--random-test",
        "1",
    ]
    assert main(args) == 0
    con = duckdb.connect(str(db), read_only=True)
    tokens = con.execute("SELECT tokens FROM examples WHERE kind = 'top' LIMIT 1").fetchone()[0]
    assert any(t.strip() in words for t in tokens)


def test_existing_database_with_another_configuration(capsys, db_copy):
    before = snapshot(db_copy)
    err = run_failing(capsys, small_args(db_copy, "--seed", "23"))
    assert "another configuration" in err and "--overwrite" in err
    assert snapshot(db_copy) == before


def test_rerun_with_the_same_configuration_is_skipped(capsys, db_copy):
    before = snapshot(db_copy)
    assert main(small_args(db_copy)) == 0
    assert "already complete" in capsys.readouterr().out
    assert snapshot(db_copy) == before


def test_overwrite_replaces_the_earlier_collect(db_copy):
    before = snapshot(db_copy)
    assert main(small_args(db_copy, "--seed", "23", "--overwrite")) == 0
    after = snapshot(db_copy)
    assert len(after["complete"]) == 1 and after["complete"] != before["complete"]
    con = duckdb.connect(str(db_copy), read_only=True)
    assert con.execute("SELECT count(DISTINCT run_id) FROM latent_examples").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_database_locked_by_another_process(capsys, db_copy):
    before = snapshot(db_copy)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)",
            str(db_copy),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        err = run_failing(capsys, small_args(db_copy))
        assert "locked by another process" in err
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.2)
    assert snapshot(db_copy) == before


def test_invalid_option_values(capsys, tmp_path):
    err = run_failing(capsys, small_args(tmp_path / "a.duckdb", "--window", "300"))
    assert "--window 300" in err
    err = run_failing(capsys, small_args(tmp_path / "b.duckdb", "--reservoir", "3"))
    assert "--reservoir 3" in err and "--reservoir" in err
    assert not (tmp_path / "a.duckdb").exists()


def test_missing_sae_folder(capsys, tmp_path):
    err = run_failing(capsys, small_args(tmp_path / "a.duckdb", "--sae", str(tmp_path / "nope")))
    assert "does not exist" in err and "cfg.json" in err
