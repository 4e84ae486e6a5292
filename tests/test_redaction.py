"""API keys and URL user info never reach the database, the logs or the exports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from autointerp.redact import redact, register_secret

from .openai_server import FaultPlan, ModelServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-planted-key-Zq81PwXk3"
URL_SECRET = "urlpass-Hk27Tt"


class NoModel:
    async def aclose(self) -> None:
        pass


def test_redact_masks_keys_bearer_tokens_and_url_userinfo():
    register_secret(KEY)
    text = f"HTTP 401: Authorization: Bearer abc.DEF-123 from http://me:{URL_SECRET}@h:1/v1 key {KEY}"
    cleaned = redact(text)
    assert KEY not in cleaned and URL_SECRET not in cleaned and "abc.DEF-123" not in cleaned
    assert "http://***@h:1/v1" in cleaned and "Bearer ***" in cleaned and cleaned.startswith("HTTP 401")


def test_planted_key_reaches_neither_database_nor_logs_nor_exports(collected_db, tmp_path):
    db = tmp_path / "explain.duckdb"
    shutil.copy(collected_db, db)
    con = duckdb.connect(str(db), read_only=True)
    latents = [
        r[0] for r in con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 2").fetchall()
    ]
    con.close()
    env = {**os.environ, "PLANTED_KEY": KEY, "PYTHONPATH": str(ROOT)}
    output = ""
    with ModelServer(NoModel(), FaultPlan([["echo_auth"], ["echo_auth"]])) as server:
        # the key in a Bearer header; then URL user info, which the client sends as Basic credentials
        urls = [server.base_url, server.base_url.replace("http://", f"http://someone:{URL_SECRET}@")]
        for latent, url in zip(latents, urls, strict=True):
            explain = [sys.executable, "-m", "autointerp.cli", "--log-level", "DEBUG", "explain", "--db", str(db)]
            explain += ["--quiet", "--backend", "openai", "--model", "smollm2", "--base-url", url]
            explain += ["--api-key-env", "PLANTED_KEY", "--latents", str(latent), "--max-retries", "0"]
            done = subprocess.run(explain, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 1, done.stderr  # the latent failed with the server's 401
            output += done.stdout + done.stderr
    sent = [a.split()[-1] for a in server.authorization]
    assert sent[0] == KEY and sent[1] != KEY  # the credentials were sent, and the server echoed them
    con = duckdb.connect(str(db), read_only=True)
    errors = [r[0] for r in con.execute("SELECT error FROM llm_calls ORDER BY call_id").fetchall()]
    configs = [
        r[0] for r in con.execute("SELECT config FROM runs WHERE stage = 'explain' ORDER BY started_at").fetchall()
    ]
    con.close()
    assert all("401" in e and "***" in e for e in errors) and "***@127.0.0.1" in configs[1]
    export = [sys.executable, "-m", "autointerp.cli", "export", "--db", str(db), "--format", "parquet"]
    exported = subprocess.run([*export, "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    output += exported.stdout + exported.stderr
    for secret in (KEY, URL_SECRET, *sent):
        assert secret not in output
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), (secret, path)
