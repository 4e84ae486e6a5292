"""The explain stage through the openai backend, against a real HTTP server answering with the embedded
model and injecting faults; kill-and-resume; the API key never reaches the database."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from autointerp.config import ExplainConfig
from autointerp.explain.stage import explain

from .conftest import query as rows
from .openai_server import FaultPlan, ModelServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(backend="openai", model="smollm2", n_examples=3, max_tokens=12, backoff_base=0.05)


@pytest.fixture
def db_copy(collected_db, tmp_path):
    path = tmp_path / "explain.duckdb"
    shutil.copy(collected_db, path)
    return path


def ok_latents(db, n: int) -> list[int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT ?", [n]
            ).fetchall()
        ]
    finally:
        con.close()


def test_faults_end_in_explained_or_failed_with_reason(db_copy, local_backend):
    latents = ok_latents(db_copy, 8)
    plan = FaultPlan([["429"], ["500", "500"], ["timeout"], ["malformed"], ["500", "500", "500"], ["400"]])
    # The client's timeout must exceed a real answer's latency on a loaded 2-core machine by a wide
    # margin, and the injected "timeout" must exceed the client's timeout.
    with ModelServer(local_backend, plan, timeout_sleep=31) as server:
        config = ExplainConfig(
            **QUICK,
            base_url=server.base_url,
            latents=",".join(map(str, latents)),
            max_in_flight=2,
            max_retries=2,
            timeout=30,
        )
        result = asyncio.run(explain(config, db_copy, progress=False))
    got = rows(db_copy, "SELECT latent, status, reason, n_calls FROM explanations ORDER BY latent")
    assert [r[0] for r in got] == latents  # none lost
    statuses = [r[1] for r in got]
    assert statuses.count("failed") == 2 and result.failed == 2
    assert set(statuses) <= {"explained", "unparsed", "failed"}
    reasons = sorted(r[2] for r in got if r[1] == "failed")
    assert "HTTP 400" in reasons[0] and "gave up after 3 attempts" in reasons[1] and "server error (500)" in reasons[1]
    for _latent, status, reason, _n_calls in got:
        assert (reason is None) == (status == "explained")
    # Every attempt is a row of llm_calls, with its error; retries stop at max_retries.
    calls = rows(db_copy, "SELECT count(*), count(error) FROM llm_calls")[0]
    assert calls[0] == len(plan.arrivals)
    assert calls[1] == sum(1 for a in plan.arrivals if a[3] != "ok")
    assert max(plan.attempts.values()) == 3 and sum(plan.attempts.values()) == len(plan.arrivals)
    assert sum(r[3] for r in got) == len(plan.arrivals)
    # The 429 carried Retry-After: 1; the retry of that prompt came at least a second later.
    first_429 = next(a for a in plan.arrivals if a[3] == "429")
    retry = next(a for a in plan.arrivals if a[1] == first_429[1] and a[2] == 2)
    assert retry[0] - first_429[0] >= 0.95


def test_no_slot_is_held_while_backing_off(db_copy, local_backend):
    latents = ok_latents(db_copy, 2)
    plan = FaultPlan([["429"]])
    with ModelServer(local_backend, plan) as server:
        config = ExplainConfig(
            **QUICK, base_url=server.base_url, latents=",".join(map(str, latents)), max_in_flight=1, max_retries=2
        )
        asyncio.run(explain(config, db_copy, progress=False))
    # With one slot: A is rate limited, B is served while A sleeps, then A's retry.
    assert [(a[2], a[3]) for a in plan.arrivals] == [(1, "429"), (1, "ok"), (2, "ok")]
    assert plan.arrivals[1][1] != plan.arrivals[0][1]


def test_api_key_never_reaches_the_database(db_copy, local_backend, monkeypatch):
    secret = "sk-autointerp-planted-7Qx93LwZ"
    monkeypatch.setenv("PLANTED_KEY", secret)
    with ModelServer(local_backend) as server:
        config = ExplainConfig(
            **QUICK,
            base_url=server.base_url,
            api_key_env="PLANTED_KEY",
            latents=",".join(map(str, ok_latents(db_copy, 2))),
        )
        asyncio.run(explain(config, db_copy, progress=False))
    assert f"Bearer {secret}" in server.authorization  # the key was used...
    for path in db_copy.parent.iterdir():  # ...and is in no file the run left behind (db, wal)
        assert secret.encode() not in path.read_bytes(), path
    assert rows(db_copy, "SELECT count(*) FROM explanations")[0][0] == 2


def test_rerun_skips_finished_latents(db_copy, local_backend):
    latents = ",".join(map(str, ok_latents(db_copy, 3)))
    with ModelServer(local_backend) as server:
        config = ExplainConfig(**QUICK, base_url=server.base_url, latents=latents)
        first = asyncio.run(explain(config, db_copy, progress=False))
        second = asyncio.run(explain(config, db_copy, progress=False))
        assert server.served == 3
    assert first.todo == 3 and second.todo == 0 and second.skipped_done == 3
    assert rows(db_copy, "SELECT count(*) FROM explanations")[0][0] == 3


def test_killed_run_resumes_without_duplicates(db_copy, local_backend):
    latents = ok_latents(db_copy, 8)
    with ModelServer(local_backend, delay=0.3) as server:
        args = [
            sys.executable,
            "-m",
            "autointerp.cli",
            "explain",
            "--db",
            str(db_copy),
            "--backend",
            "openai",
            "--model",
            "smollm2",
            "--base-url",
            server.base_url,
            "--latents",
            ",".join(map(str, latents)),
            "--n-examples",
            "3",
            "--max-tokens",
            "12",
            "--max-in-flight",
            "1",
            "--quiet",
        ]
        child = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while server.served < 3 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        child.send_signal(signal.SIGKILL)
        child.wait()
        served_before = server.served
        done_before = rows(db_copy, "SELECT count(*) FROM explanations")[0][0]
        assert 0 < done_before < len(latents)
        config = ExplainConfig(**QUICK, base_url=server.base_url, latents=",".join(map(str, latents)), max_in_flight=1)
        result = asyncio.run(explain(config, db_copy, progress=False))
        served_after = server.served
    got = rows(db_copy, "SELECT latent, status FROM explanations ORDER BY latent")
    assert [r[0] for r in got] == latents and all(r[1] in ("explained", "unparsed") for r in got)
    # Each latent was answered once in the log; at most the one call in flight was lost at the kill.
    per_latent = rows(db_copy, "SELECT item, count(*) FROM llm_calls WHERE error IS NULL GROUP BY item")
    assert sorted(c for _, c in per_latent) == [1] * len(latents)
    assert served_after - served_before == result.calls
    assert served_before - done_before <= 1
    statuses = rows(db_copy, "SELECT status FROM runs WHERE stage = 'explain' ORDER BY started_at")
    assert statuses[0][0] == "interrupted" and statuses[-1][0] == "complete"  # the rerun marked the killed run


def test_prompts_show_only_explain_set_contexts(db_copy, local_backend):
    from autointerp.explain.render import clean_token, neutralise
    from autointerp.models.special import collect_special_ids
    from autointerp.store.runs import latest_collect_config
    from autointerp.text import hide_special

    latent = ok_latents(db_copy, 1)[0]
    with ModelServer(local_backend) as server:
        config = ExplainConfig(
            **{**QUICK, "n_examples": 40}, base_url=server.base_url, latents=str(latent), explainer="contrastive"
        )
        asyncio.run(explain(config, db_copy, progress=False))
    import json

    messages = json.loads(rows(db_copy, "SELECT messages FROM llm_calls")[0][0])
    prompt = messages[-1]["content"].replace("<<", "").replace(">>", "")
    contexts = rows(db_copy, "SELECT split, kind, tokens, token_ids FROM examples WHERE latent = ?", [latent])
    con = duckdb.connect(str(db_copy), read_only=True)
    special = collect_special_ids(latest_collect_config(con))
    con.close()

    def text(tokens, ids):  # as the explainer renders it: special tokens show as nothing
        return neutralise("".join(clean_token(t) for t in hide_special(tokens, ids, special))).strip()

    shown = {split: [text(t, i) in prompt for s, _, t, i in contexts if s == split] for split in ("explain", "test")}
    assert sum(shown["explain"]) >= 4  # the explain set's quantile and random contexts are there
    assert not any(shown["test"])  # and no test context is
