"""The corpus is counted before the model runs: --tokens beyond it fails at once, --tokens all uses it whole."""

from __future__ import annotations

import json
import os
import time

import duckdb
import pytest

from autointerp.cli import main

pytestmark = pytest.mark.slow

TINY = [
    "--n-quantiles", "1", "--explain-per-quantile", "1", "--test-per-quantile", "1", "--reservoir", "4",
    "--top-k", "2", "--random-explain", "1", "--random-test", "1", "--seq-len", "64", "--window", "16",
    "--peak-offset", "12",
]  # fmt: skip


def write_corpus(path, lines: int):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    path.write_text("\n".join(" ".join(words[(i * j) % 10] for j in range(40)) for i in range(lines)))
    return path


def test_tokens_beyond_the_corpus_fail_before_the_model_runs(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus.txt", 6000)  # ~250k tokens: minutes of model time on a CPU
    db = tmp_path / "a.duckdb"
    start = time.perf_counter()
    code = main(["collect", "--db", str(db), "--quiet", "--dataset", str(corpus), "--tokens", str(10**12), *TINY])
    seconds = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2 and "has only" in err and "--tokens all" in err
    assert seconds < 60, f"{seconds:.0f} s: the model ran over the corpus before the refusal"
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]


def test_tokens_all_uses_the_whole_corpus(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus.txt", 60)
    db = tmp_path / "a.duckdb"
    assert main(["collect", "--db", str(db), "--quiet", "--dataset", str(corpus), "--tokens", "all", *TINY]) == 0
    con = duckdb.connect(str(db), read_only=True)
    n_sequences, n_tokens = con.execute("SELECT n_sequences, n_tokens FROM collections").fetchone()
    config = json.loads(con.execute("SELECT config FROM runs WHERE status = 'complete'").fetchone()[0])
    con.close()
    assert n_sequences > 10 and config["tokens"] == n_sequences * 64
    # one more sequence than the corpus holds is refused, the whole corpus is not
    more = str(config["tokens"] + 64)
    assert (
        main(
            [
                "collect",
                "--db",
                str(tmp_path / "b.duckdb"),
                "--quiet",
                "--dataset",
                str(corpus),
                "--tokens",
                more,
                *TINY,
            ]
        )
        == 2
    )
    assert f"has only {config['tokens']:,} tokens" in capsys.readouterr().err


def test_absurd_token_counts_are_refused_up_front(tmp_path, capsys):
    assert main(["collect", "--db", str(tmp_path / "a.duckdb"), "--tokens", str(10**14)]) == 2
    assert "--tokens" in capsys.readouterr().err and not (tmp_path / "a.duckdb").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["collect", "--db", str(tmp_path / "a.duckdb"), "--tokens", "1e12"])
    assert exit_.value.code == 2


def test_blank_corpus_does_not_suggest_tokens_0(tmp_path, capsys):
    corpus = tmp_path / "blank.txt"
    corpus.write_text("\n" * 500)
    for tokens in ("1000", "all"):
        args = ["collect", "--db", str(tmp_path / f"{tokens}.duckdb"), "--quiet", "--dataset", str(corpus)]
        assert main([*args, "--tokens", tokens, *TINY]) == 2
        err = capsys.readouterr().err
        assert "--tokens 0" not in err and "no whole sequence" in err and "--seq-len" in err


def test_binary_corpus_is_a_clear_error(tmp_path, capsys):
    corpus = tmp_path / "garbage.txt"
    corpus.write_bytes(os.urandom(20_000))
    assert main(["collect", "--db", str(tmp_path / "a.duckdb"), "--quiet", "--dataset", str(corpus), *TINY]) == 2
    err = capsys.readouterr().err
    assert "UTF-8" in err and "Traceback" not in err
