"""A damaged database, a full disk and an --out that is a file: a clear error (exit 2), nothing lost."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from autointerp.cli import main

from .conftest import query


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def damaged_copies(collected_db, tmp_path):
    truncated = tmp_path / "truncated.duckdb"
    shutil.copy(collected_db, truncated)
    os.truncate(truncated, truncated.stat().st_size // 2)
    flipped = tmp_path / "flipped.duckdb"
    data = bytearray(collected_db.read_bytes())
    for i in range(12_288, len(data), 4096):  # past the headers: every block
        data[i] ^= 0xFF
    flipped.write_bytes(bytes(data))
    return [truncated, flipped]


@pytest.mark.slow
def test_damaged_databases_are_a_clear_error_and_stay_as_they_are(collected_db, tmp_path, capsys):
    for db in damaged_copies(collected_db, tmp_path):
        before = digest(db)
        commands = [
            ["sql", "--db", str(db), "SELECT count(*) FROM latent_summary"],
            ["sql", "--db", str(db), "SELECT * FROM examples"],
            ["browse", "--db", str(db), "--static", str(tmp_path / f"site-{db.stem}")],
            ["explain", "--db", str(db), "--quiet"],
            ["export", "--db", str(db), "--format", "parquet", "--out", str(tmp_path / f"out-{db.stem}")],
        ]
        for args in commands:
            assert main(args) == 2, (db.name, args)
            err = capsys.readouterr().err
            assert "damaged" in err or "Corrupt" in err, (db.name, args, err)
            assert digest(db) == before, (db.name, args)


def test_export_out_a_file_is_refused(tmp_path, capsys):
    from autointerp.store.db import connect

    db = tmp_path / "a.duckdb"
    connect(db).close()
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    for fmt in ("parquet", "neuronpedia"):
        assert main(["export", "--db", str(db), "--format", fmt, "--out", str(out)]) == 2
        assert "is a file" in capsys.readouterr().err and out.read_text() == "mine"


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of ``size`` bytes (needs root); yields a function that mounts one."""
    mounts = []

    def mount(size: int):
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_a_clear_error_and_keeps_what_was_stored(collected_db, small_disk, capsys):
    n_latents = query(collected_db, "SELECT count(*) FROM latents")[0][0]
    disk = small_disk(collected_db.stat().st_size + 200_000)
    db = disk / "db.duckdb"
    shutil.copy(collected_db, db)
    big = "CREATE TABLE big AS SELECT repeat('x', 1000) || range AS s FROM range(100000)"
    assert main(["sql", "--write", "--db", str(db), big]) == 2
    err = capsys.readouterr().err
    assert "disk is full" in err and "Traceback" not in err
    assert query(db, "SELECT count(*) FROM latents")[0][0] == n_latents  # what was stored is intact
    out = small_disk(100_000)
    assert main(["export", "--db", str(collected_db), "--format", "parquet", "--out", str(out / "x")]) == 2
    assert "disk is full" in capsys.readouterr().err
