"""Cost accounting: cached prompt tokens as a server reports them (and estimated where it reports none),
the ``llm_costs`` view and ``autointerp cost`` summing exactly what ``llm_calls`` logged, prices to dollars,
bad prices refused."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path

import pytest

from autointerp.cli import main
from autointerp.config import ExplainConfig
from autointerp.explain.stage import explain
from autointerp.llm.base import Completion, GenerateOptions
from autointerp.llm.queue import CallRecord
from autointerp.plan.costs import Prices
from autointerp.store.cached_prefix import PrefixMemory, common_prefix_length, latent_key
from autointerp.store.db import connect
from autointerp.store.llm_log import CallLogWriter

from .conftest import query
from .openai_server import ModelServer

QUICK = dict(backend="openai", model="smollm2", n_examples=3, max_tokens=12, backoff_base=0.05)
SUMS = "SELECT count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens) FROM llm_calls"


def test_common_prefix_and_latent_key():
    for a, b in [("", ""), ("abc", "abd"), ("abc", "abc"), ("abcdef", "abc"), ("x", "y"), ("hello world", "hello")]:
        expected = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        assert common_prefix_length(a, b) == expected
    assert latent_key("latent 12 detection batch 3") == "latent 12" and latent_key("probe") == "probe"


def _record(item: str, user: str, prompt_tokens: int, cached: int | None) -> CallRecord:
    messages = [{"role": "system", "content": "S" * 300}, {"role": "user", "content": user}]
    completion = Completion("ok", prompt_tokens, 2, cached_tokens=cached)
    return CallRecord(item, "detection", messages, GenerateOptions(), 1, time.time(), 0.01, completion)


def test_estimate_where_the_backend_reports_none(tmp_path):
    """A call without a reported figure gets the estimate from the prefix shared with the latent's earlier
    call; the view counts reported figures as they are and estimates only where nothing was reported."""
    con = connect(tmp_path / "c.duckdb")
    con.execute(
        "INSERT INTO runs (run_id, stage, config, config_hash, status, started_at) VALUES "
        "('score-1', 'score', '{}', 'h', 'complete', now())"
    )
    writer = CallLogWriter(con, "score-1", "detection", "openai", "m")

    async def log():
        task = asyncio.create_task(writer.run())
        writer.log_call(_record("latent 4 detection batch 0", "A" * 100, 400, None))
        writer.log_call(_record("latent 4 detection batch 1", "B" * 100, 400, None))  # shares the system prompt
        writer.log_call(_record("latent 5 detection batch 0", "A" * 100, 400, 7))  # another latent: reported
        await writer.close()
        await task

    asyncio.run(log())
    got = con.execute("SELECT item, cached_tokens, cached_tokens_estimate FROM llm_calls ORDER BY call_id").fetchall()
    text_len = len("<system>\n" + "S" * 300 + "\n<user>\n" + "A" * 100 + "\n")
    shared = len("<system>\n" + "S" * 300 + "\n<user>\n")
    assert got == [
        ("latent 4 detection batch 0", None, 0),
        ("latent 4 detection batch 1", None, round(400 * shared / text_len)),
        ("latent 5 detection batch 0", 7, 0),
    ]
    row = con.execute(
        "SELECT strategy, latents, calls, prompt_tokens, cached_tokens, cached_tokens_estimated FROM llm_costs"
    ).fetchone()
    assert row == (None, 2, 3, 1200, 7 + got[1][2], got[1][2])
    con.close()


def test_prefix_memory_is_bounded():
    memory = PrefixMemory(max_latents=2, per_latent=2)
    messages = [{"role": "user", "content": "same"}]
    assert memory.estimate("latent 1", messages, 10) == 0
    assert memory.estimate("latent 1 x", messages, 10) == 10  # the same prompt again: all of it
    memory.estimate("latent 2", messages, 10)
    memory.estimate("latent 3", messages, 10)  # latent 1 is forgotten
    assert memory.estimate("latent 1", messages, 10) == 0


def test_prices_to_dollars():
    prices = Prices(prompt=2.0, completion=8.0, cached=0.5)
    # 1M prompt tokens of which 400k cached, 100k completion tokens
    assert prices.dollars(1_000_000, 400_000, 100_000) == pytest.approx(0.6 * 2 + 0.4 * 0.5 + 0.1 * 8)
    assert Prices(prompt=1.0).dollars(1_000_000, 500_000, 0) == pytest.approx(1.0)  # cached defaults to prompt
    assert Prices(prompt=1.0, cached=0.0).dollars(100, 500, 0) == 0.0  # never more cached than prompt


@pytest.mark.parametrize("flag,value", [("--price-in", "-1"), ("--price-out", "inf"), ("--price-cached", "nan")])
def test_bad_prices_exit_2(tmp_path, capsys, flag, value):
    connect(tmp_path / "e.duckdb").close()
    assert main(["cost", "--db", str(tmp_path / "e.duckdb"), flag, value]) == 2
    err = capsys.readouterr().err
    assert f"{flag} is" in err and "zero or more" in err


@pytest.mark.slow
def test_cost_of_a_real_explain_matches_the_call_log(collected_db, tmp_path, local_backend, capsys):
    """An explain against a server that reports cached tokens: they are stored per call, and the view,
    the command's JSON and its dollars add up to exactly what llm_calls holds."""
    db = tmp_path / "cost.duckdb"
    shutil.copy(collected_db, db)
    latents = [r[0] for r in query(db, "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT 3")]
    with ModelServer(local_backend, prefix_cache=True) as server:
        config = ExplainConfig(**QUICK, base_url=server.base_url, latents=",".join(map(str, latents)), timeout=60)
        asyncio.run(explain(config, db, progress=False))
    calls = query(db, "SELECT prompt_tokens, cached_tokens FROM llm_calls WHERE error IS NULL ORDER BY call_id")
    assert len(calls) == 3 and all(c is not None and 0 <= c <= p for p, c in calls)
    assert calls[0][1] == 0 and all(c > 0 for _, c in calls[1:])  # later prompts share the system prompt
    n, prompt, completion, cached = query(db, SUMS)[0]
    view = query(
        db,
        "SELECT stage, strategy, purpose, latents, calls, prompt_tokens, completion_tokens, "
        "cached_tokens, cached_tokens_estimated FROM llm_costs",
    )
    assert view == [("explain", "single", "explain", 3, n, prompt, completion, cached, 0)]

    assert (
        main(["cost", "--db", str(db), "--json", "--price-in", "1.5", "--price-out", "6", "--price-cached", "0.5"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    (row,) = out["runs"]
    assert (row["calls"], row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
        n,
        prompt,
        completion,
        cached,
    )
    expected = ((prompt - cached) * 1.5 + cached * 0.5 + completion * 6) / 1e6
    assert row["dollars"] == pytest.approx(expected) and row["dollars_per_latent"] == pytest.approx(expected / 3)
    assert out["strategies"][0]["strategy"] == "single" and out["strategies"][0]["calls"] == n
    assert main(["cost", "--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert "single" in table and "cached/latent" in table and "dollars" not in table


def test_llm_costs_has_exactly_the_documented_columns(tmp_path):
    docs = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()
    section = docs.split("## `llm_costs`")[1].split("\n## ")[0]
    documented = re.findall(r"^\| `(\w+)` \| (\w+) \|", section, flags=re.M)
    con = connect(tmp_path / "d.duckdb")
    assert [(r[0], r[1]) for r in con.execute("DESCRIBE llm_costs").fetchall()] == documented
    con.close()
