"""The built wheel works without the repository: build it, install it (not editable) into a fresh
virtual environment, and from a folder outside the repository run ``autointerp collect`` and
``autointerp explain`` on one latent with the embedded defaults, which read the prompts and the SAE
shipped inside the wheel.

The fresh environment borrows this one's installed dependencies (torch, transformers, the embedded
model's package...) through a .pth line, so nothing is downloaded; autointerp itself must come from
the wheel, which the test checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import duckdb
import pytest

from .conftest import SMALL

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("autointerp", "prompts", "data", "setup.py", "pyproject.toml", "README.md")


def run(args, cwd: Path, env: dict) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(tmp_path: Path, env: dict) -> Path:
    """The wheel of a clean copy of the sources (a build/ folder left in the checkout could add stale files)."""
    source = tmp_path / "source"
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, source],
        tmp_path,
        env,
    )
    (wheel,) = dist.glob("autointerp-*.whl")
    return wheel


def fresh_venv(tmp_path: Path, env: dict) -> Path:
    """A new virtual environment whose site-packages ends with this environment's (for the dependencies)."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path, env)  # with its own pip, which installs the wheel
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return venv


def test_the_wheel_collects_and_explains_outside_the_repository(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    wheel = build_wheel(tmp_path, env)
    venv = fresh_venv(tmp_path, env)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path, env)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(
        [
            python,
            "-c",
            "import autointerp, autointerp.resources as r; "
            "print(autointerp.__file__); print(r.prompts()); print(r.embedded_sae_dir())",
        ],
        elsewhere,
        env,
    ).split()
    assert all(Path(path).resolve().is_relative_to(venv.resolve()) for path in where), where

    db = elsewhere / "wheel.duckdb"
    collect = [venv / "bin" / "autointerp", "collect", "--db", db, "--quiet"]
    for key, value in {**SMALL, "tokens": 4096}.items():
        collect += ["--" + key.replace("_", "-"), value]
    run(collect, elsewhere, env)
    with duckdb.connect(str(db), read_only=True) as con:
        (latent,) = con.sql("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 1").fetchall()[0]
    explain = [venv / "bin" / "autointerp", "explain", "--db", db, "--quiet", "--latents", latent, "--max-tokens", 60]
    run(explain, elsewhere, env)
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("SELECT latent, status FROM explanations").fetchall()
        (messages,) = con.sql("SELECT CAST(messages AS VARCHAR) FROM llm_calls").fetchall()[0]
    assert rows == [(latent, "explained")]
    assert "Excerpt 1:" in messages  # rendered from the templates inside the wheel
