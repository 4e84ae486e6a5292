"""``autointerp steer``: the command line on a copy of the session's collect database. Bad input is
refused with a clear error and exit status 2 before any model is loaded; a real steer prints the
calibrated strength, the KL it reached and both continuations; the database file never changes."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys

import duckdb
import pytest

from autointerp.cli import main

from .conftest import query


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def steer_db(collected_db, tmp_path):
    """A copy of the collect database with latent 7 recorded as planted (a rule over token ids, no
    decoder weights) and latent 9 as dead (never fired), as a real --planted collect and a longer
    corpus would record them."""
    path = tmp_path / "steer.duckdb"
    shutil.copy(collected_db, path)
    con = duckdb.connect(str(path))
    try:
        run_id = con.execute("SELECT run_id FROM latent_stats LIMIT 1").fetchone()[0]
        con.execute(
            "INSERT INTO planted_latents VALUES (?, 7, '{\"family\": \"word_list\"}', 'the word the', 'word_list', "
            '0.01, 1.0, \'{"distribution": "lognormal"}\', 0.01, 0.01, true, 0.01)',
            [run_id],
        )
        con.execute("UPDATE latent_stats SET n_firing = 0, frequency = 0 WHERE latent = 9")
    finally:
        con.close()
    return path


def steer(db, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "autointerp.cli", "steer", "--db", str(db), "--prompt", "I think", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_bad_input_is_a_clear_error_and_leaves_the_database_unchanged(steer_db, capsys):
    before = digest(steer_db)
    done = steer(steer_db, "--latent", "7")  # the command line itself: exit status and stderr
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("autointerp steer: error: Latent 7 cannot be steered: it is a planted latent")
    assert "Traceback" not in done.stderr
    n_latents = query(steer_db, "SELECT n_latents FROM collections")[0][0]
    cases = {
        ("--latent", "9"): "Latent 9 is dead: it never fired",
        ("--latent", str(n_latents)): f"--latent {n_latents} is out of range: the dictionary has {n_latents} latents",
        ("--latent", "-1"): "--latent is -1",
        ("--latent", "five"): "--latent 'five' is not a whole number",
        ("--latent", "5", "--strength", "strong"): "--strength 'strong' is not a finite number",
        ("--latent", "5", "--strength", "nan"): "--strength 'nan' is not a finite number",
        ("--latent", "5", "--strength=-inf"): "--strength '-inf' is not a finite number",
        ("--latent", "5", "--target-kl", "0"): "--target-kl is 0",
        ("--latent", "5", "--tokens", "0"): "--tokens is 0",
        ("--latent", "5", "--temperature", "-1"): "--temperature is -1",
    }
    for args, message in cases.items():
        assert main(["steer", "--db", str(steer_db), "--prompt", "I think", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(f"autointerp steer: error: {message}"), (args, err)
        assert "Expected: " in err
    assert main(["steer", "--db", str(steer_db / "missing"), "--latent", "5", "--prompt", "x"]) == 2
    assert "No database at" in capsys.readouterr().err
    assert digest(steer_db) == before


@pytest.mark.slow
def test_steer_prints_the_calibrated_strength_and_both_continuations(steer_db):
    before = digest(steer_db)
    done = steer(steer_db, "--latent", "5", "--target-kl", "0.5", "--tokens", "6", "--seed", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("latent 5 of ") and lines[0].endswith("steered at model.layers.14")
    strength = float(re.fullmatch(r"strength: (\S+) \(calibrated to target KL \+0\.5 ± 0\.05 nats\)", lines[1])[1])
    achieved = float(re.fullmatch(r"achieved KL: (\S+) nats \(next token after the prompt\)", lines[2])[1])
    assert strength > 0 and abs(achieved - 0.5) <= 0.05
    assert lines[3] == "prompt:  I think"
    assert lines[4].startswith("clean:   I think") and lines[5].startswith("steered: I think")
    assert len(lines) == 6
    # at strength 0 the steered continuation is the clean one: both draw the same random numbers
    zero = steer(steer_db, "--latent", "5", "--strength", "0", "--tokens", "6", "--seed", "3")
    assert zero.returncode == 0, zero.stderr
    clean, steered = zero.stdout.splitlines()[4:6]
    assert clean.removeprefix("clean:   ") == steered.removeprefix("steered: ")
    assert clean == lines[4]  # the same seed gives the same clean continuation
    assert zero.stdout.splitlines()[1] == "strength: 0 (given)"
    assert zero.stdout.splitlines()[2] == "achieved KL: 0 nats (next token after the prompt)"
    assert digest(steer_db) == before
