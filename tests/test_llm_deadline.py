"""``--timeout`` bounds a whole request, connecting and reading included, and a late one is transient."""

from __future__ import annotations

import asyncio
import shutil
import time

import duckdb
import pytest

from autointerp.llm.base import GenerateOptions, TransientError
from autointerp.llm.openai_backend import OpenAIBackend

from .openai_server import FaultPlan, ModelServer

pytestmark = pytest.mark.slow


class NoModel:
    """The server's backend when every request it gets is answered by a fault."""

    async def aclose(self) -> None:
        pass


def test_a_trickling_answer_times_out_at_the_deadline():
    with ModelServer(NoModel(), FaultPlan([["trickle"]])) as server:
        backend = OpenAIBackend("smollm2", server.base_url, timeout=2)

        async def call():
            try:
                return await backend.generate([{"role": "user", "content": "hi"}], GenerateOptions(max_tokens=4))
            finally:
                await backend.aclose()

        start = time.monotonic()
        with pytest.raises(TransientError, match="timed out"):
            asyncio.run(call())
        assert time.monotonic() - start < 6  # 2 s deadline; one byte a second never trips a read timeout


def test_explain_retries_a_trickling_request_and_then_fails_it(collected_db, tmp_path, capsys):
    from autointerp.cli import main

    db = tmp_path / "explain.duckdb"
    shutil.copy(collected_db, db)
    con = duckdb.connect(str(db), read_only=True)
    latent = con.execute("SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 1").fetchone()[0]
    con.close()
    plan = FaultPlan([["trickle", "trickle"]])
    with ModelServer(NoModel(), plan) as server:
        args = ["explain", "--db", str(db), "--quiet", "--backend", "openai", "--model", "smollm2"]
        args += ["--base-url", server.base_url, "--latents", str(latent), "--timeout", "2", "--max-retries", "1"]
        args += ["--backoff-base", "0.05"]
        start = time.monotonic()
        assert main(args) == 1  # the latent failed; the run finished
        assert time.monotonic() - start < 30
    assert [a[3] for a in plan.arrivals] == ["trickle", "trickle"]  # retried once, as --max-retries 1 says
    con = duckdb.connect(str(db), read_only=True)
    errors = [r[0] for r in con.execute("SELECT error FROM llm_calls ORDER BY 1").fetchall()]
    assert len(errors) == 2 and all("timed out" in e for e in errors)
