"""`autointerp plan`: counts from the real prompts (checked against the prompts tokenized here by hand),
the cacheable prefix, dollars, the approximation, bad input (exit 2), calibration through a real HTTP
server, and plan against actuals on an embedded explain and score run. Tests reading the session's
collect are slow (it runs the embedded model once)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from autointerp.cli import main
from autointerp.config import ExplainConfig, ScoreConfig
from autointerp.explain.prompt import build_messages
from autointerp.explain.stage import explain_options, read_examples
from autointerp.models.special import collect_special_ids
from autointerp.plan import load_tokenizer, make_plan
from autointerp.plan.count import shared_prefix
from autointerp.plan.tokenizer import approximate
from autointerp.store.db import connect
from autointerp.store.runs import latest_collect_config

from .answering_backend import AnsweringBackend
from .openai_server import ModelServer

LATENTS = 3


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("local", "")


@pytest.fixture(scope="module")
def latents(collected_db) -> list[int]:
    con = connect(collected_db, read_only=True)
    try:
        rows = con.execute(
            "SELECT latent FROM latents WHERE status = 'ok' ORDER BY latent LIMIT ?", [LATENTS]
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def spec(latents: list[int]) -> str:
    return ",".join(map(str, latents))


def plan_json(capsys, *args) -> dict:
    assert main(["plan", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_explain_counts_are_the_real_prompts_tokenized(collected_db, latents, tokenizer):
    config = ExplainConfig(latents=spec(latents))
    con = connect(collected_db, read_only=True)
    try:
        plan = make_plan(con, str(collected_db), ["explain"], config, ScoreConfig(), tokenizer)
        examples, maxima = read_examples(con, latents, collect_special_ids(latest_collect_config(con)))
    finally:
        con.close()
    hf, prefill = tokenizer.hf, explain_options(config).prefill
    prompts = [
        hf.apply_chat_template(
            build_messages(examples[lat], maxima[lat], config), tokenize=False, add_generation_prompt=True
        )
        + prefill
        for lat in latents
    ]
    ids = [hf(p, add_special_tokens=False).input_ids for p in prompts]
    explain = plan.counts.by_purpose["explain"]
    assert (explain.calls, explain.prompt_tokens) == (len(latents), sum(map(len, ids)))
    assert explain.completion_budget == len(latents) * config.max_tokens
    # the first prompt pays everything; the others share the system message and few-shot turns with it
    assert explain.cached_tokens == sum(shared_prefix(ids[0], i) for i in ids[1:])
    assert 0 < explain.cached_tokens < explain.prompt_tokens
    assert plan.counts.by_latent[latents[0]].cached_tokens == 0


@pytest.mark.slow
def test_score_plan_per_purpose_and_latent(collected_db, latents, capsys):
    out = plan_json(
        capsys, "--db", str(collected_db), "--latents", spec(latents), "--scorers", "detection,fuzzing,embedding"
    )
    assert out["latents"] == len(latents) and out["tokenizer_exact"]
    assert set(out["by_purpose"]) == {"explain", "detection", "fuzzing"}
    total = out["total"]
    assert total["calls"] == sum(p["calls"] for p in out["by_purpose"].values())
    assert total["prompt_tokens"] == total["cached_tokens"] + total["uncached_tokens"]
    assert out["by_purpose"]["detection"]["completion_budget"] == 120 * out["by_purpose"]["detection"]["calls"]
    assert any("placeholder of 20 tokens" in n for n in out["notes"])  # nothing explained yet
    assert any(n.startswith("embedding: calls no LLM") for n in out["notes"])
    per_latent = plan_json(capsys, "--db", str(collected_db), "--latents", spec(latents), "--per-latent")["per_latent"]
    assert sorted(map(int, per_latent)) == latents
    assert sum(v["prompt_tokens"] for v in per_latent.values()) == total["prompt_tokens"]
    longer = plan_json(
        capsys, "--db", str(collected_db), "--latents", spec(latents), "--stages", "score", "--explanation-tokens", "60"
    )
    shorter = plan_json(capsys, "--db", str(collected_db), "--latents", spec(latents), "--stages", "score")
    assert set(longer["by_purpose"]) == {"detection", "fuzzing"}
    # every score prompt carries the explanation once: 40 more tokens each
    calls = longer["total"]["calls"]
    assert longer["total"]["prompt_tokens"] - shorter["total"]["prompt_tokens"] == pytest.approx(40 * calls, rel=0.05)


@pytest.mark.slow
def test_dollars_and_table(collected_db, latents, capsys):
    args = ["--db", str(collected_db), "--latents", spec(latents), "--stages", "explain"]
    out = plan_json(capsys, *args, "--price-in", "2", "--price-out", "8", "--price-cached", "0.5")
    t, d = out["total"], out["dollars"]
    expected = (t["uncached_tokens"] * 2 + t["cached_tokens"] * 0.5 + t["completion_budget"] * 8) / 1e6
    assert d["total"] == pytest.approx(expected)
    assert main(["plan", *args, "--price-in", "2"]) == 0
    table = capsys.readouterr().out
    assert "explain" in table and "uncached" in table and "dollars:" in table and "SmolLM2" in table


@pytest.mark.slow
def test_without_a_local_tokenizer_the_count_is_a_stated_approximation(collected_db, latents, capsys):
    args = ["--db", str(collected_db), "--latents", spec(latents), "--stages", "explain"]
    out = plan_json(capsys, *args, "--backend", "openai", "--model", "no-such-model-on-this-machine")
    assert not out["tokenizer_exact"] and "4 characters per token" in out["tokenizer"]
    assert any("approximate" in n for n in out["notes"])
    exact = plan_json(capsys, *args)
    # English text runs about 4 characters per token: the approximation is near the real count
    assert 0.5 < out["total"]["prompt_tokens"] / exact["total"]["prompt_tokens"] < 2
    assert approximate().tokens(9) == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--scorers", "detection,nosuch"], "--scorers"),
        (["--price-in", "-1"], "--price-in is -1.0"),
        (["--price-out", "nan"], "--price-out is nan"),
        (["--stages", "explain,collect"], "--stages"),
        (["--calibrate", "-2"], "--calibrate"),
        (["--tokenizer", "/no/such/folder"], "--tokenizer"),
        (["--latents", "99999"], "selects no latent"),
    ],
)
def test_bad_input_is_a_clear_error(collected_db, capsys, args, message):
    assert main(["plan", "--db", str(collected_db), *args]) == 2
    err = capsys.readouterr().err
    assert "autointerp plan: error:" in err and message in err


def test_a_database_without_a_collect_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.duckdb"
    connect(empty).close()
    assert main(["plan", "--db", str(empty)]) == 2
    assert "no complete collect" in capsys.readouterr().err
    assert main(["plan", "--db", str(tmp_path / "missing.duckdb")]) == 2
    assert "No database at" in capsys.readouterr().err


@pytest.mark.slow
def test_calibration_measures_through_the_backend(collected_db, latents, capsys):
    """Plumbing through a real HTTP server (a scripted answerer at the network edge): each request is
    sent twice, and the estimate lies inside its interval."""
    answerer = AnsweringBackend()
    with ModelServer(answerer, delay=0.05) as server:
        args = ["--db", str(collected_db), "--latents", spec(latents), "--backend", "openai", "--model", "m"]
        args += ["--base-url", server.base_url, "--scorers", "detection", "--tokenizer", "/no/such"]
        assert main(["plan", *args]) == 2  # a --tokenizer that is not here is refused before any request
        capsys.readouterr()
        out = plan_json(capsys, *args[:-2], "--calibrate", "3")
    c = out["calibration"]
    assert answerer.calls == 6 and len(c["measurements"]) == 3
    assert {m["purpose"] for m in c["measurements"]} == {"explain", "detection"}
    assert all(m["prefill_rate"] > 0 and m["full_s"] > 0 for m in c["measurements"])
    assert c["low_s"] <= c["seconds"] <= c["high_s"] and math.isfinite(c["high_s"])
    assert c["prefill_tokens"] == out["total"]["uncached_tokens"]  # a server: its prefix cache is assumed


@pytest.mark.slow
def test_plan_agrees_with_an_embedded_run(collected_db, latents, tmp_path, capsys):
    """Explain then score (detection, fuzzing) a few latents with the embedded model; the plan of the
    same latents, made at the end of each stage, agrees with the logged calls: calls and prompt tokens
    exactly (the same prompts, the same tokenizer and chat template as the local backend's)."""
    from autointerp.plan.actuals import actuals, plan_beside_actuals
    from autointerp.store import runs

    db = tmp_path / "run.duckdb"
    shutil.copy(collected_db, db)
    assert main(["explain", "--db", str(db), "--latents", spec(latents), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "plan beside actuals" in printed
    figures = {}
    for stage, config in (
        ("explain", ExplainConfig(latents=spec(latents))),
        ("score", ScoreConfig(latents=spec(latents), scorers="detection,fuzzing")),
    ):
        if stage == "score":
            assert main(["score", "--db", str(db), "--latents", spec(latents), "--quiet"]) == 0
            assert "plan beside actuals" in capsys.readouterr().out
        con = connect(db, read_only=True)
        try:
            run_id = runs.stage_runs(con, stage)[-1].run_id
            plan, act, n = plan_beside_actuals(con, str(db), stage, run_id, config, load_tokenizer("local", ""))
            assert act == actuals(con, run_id)
        finally:
            con.close()
        total = plan.counts.total
        assert n == plan.latents
        assert act.calls == total.calls and act.failed_calls == 0
        assert act.prompt_tokens == total.prompt_tokens
        assert act.completion_tokens <= total.completion_budget
        figures[stage] = (total.calls, total.prompt_tokens, total.cached_tokens, act.completion_tokens)
    print("plan against actuals", figures)
