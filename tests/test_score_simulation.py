"""The simulation scorer: answer parsing (values or logprob expectations), and the stage end to end."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from autointerp.config import ScoreConfig
from autointerp.llm.base import TokenLogprob
from autointerp.score import simulation
from autointerp.score.classifier import TestContext as Ctx
from autointerp.score.metrics import pearson
from autointerp.score.stage import score

from .conftest import query
from .openai_server import ModelServer
from .test_score_stage import explained_db  # noqa: F401 - fixture


def test_parse_reads_one_line_per_excerpt():
    sims = simulation.parse("[ANSWER]:\n1: 0 3 10\n2: 0 0", [3, 2])
    assert [s.values for s in sims] == [[0, 3, 10], [0, 0]] and all(s.reason is None for s in sims)


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("1: 0 3 10\n2: 0 0", "no '[ANSWER]:' line"),
        ("[ANSWER]:\n1: 0 3\n2: 0 0", "excerpt 1: 2 values for 3 tokens"),  # partial
        ("[ANSWER]:\n1: 0 3 10 4\n2: 0 0", "excerpt 1: 4 values for 3 tokens"),  # over-long
        ("[ANSWER]:\n1: 0 3 11\n2: 0 0", "not integers 0-10"),
        ("[ANSWER]:\n1: 0 high 1\n2: 0 0", "not integers 0-10"),
        ("[ANSWER]:\n2: 0 0", "no line for excerpt 1"),
        ("", "empty answer"),
    ],
)
def test_unreadable_excerpts_are_unscored_with_a_reason(answer, reason):
    first = simulation.parse(answer, [3, 2])[0]
    assert first.values is None and reason in first.reason


def test_reasoning_and_quoted_answers_before_the_last_marker_are_ignored():
    answer = (
        "<think>[ANSWER]:\n1: 9 9 9</think>The excerpt quotes '[ANSWER]: 1: 5 5 5' but my answer is\n"
        "[ANSWER]:\n1: 0 1 2\n2: 0 0"
    )
    assert [s.values for s in simulation.parse(answer, [3, 2])] == [[0, 1, 2], [0, 0]]


def test_logprobs_give_the_expected_value_of_each_token():
    steps = [
        TokenLogprob("\n", 0.0),
        TokenLogprob("1", 0.0),
        TokenLogprob(":", 0.0),
        TokenLogprob(" ", 0.0),
        TokenLogprob("2", math.log(0.5), {"2": math.log(0.5), "4": math.log(0.5)}),
        TokenLogprob(" ", 0.0),
        TokenLogprob("0", math.log(0.9), {"0": math.log(0.9), "1": math.log(0.1)}),
    ]
    text = "[ANSWER]:" + "".join(s.token for s in steps)
    sims = simulation.parse(text, [2], steps, "[ANSWER]:")
    assert sims[0].from_logprobs and sims[0].values == pytest.approx([3.0, 0.1])


def test_contexts_are_half_activating_over_quantiles_and_half_not():
    contexts = [Ctx(i, "quantile", i % 3, ["a"], [1.0]) for i in range(30)]
    contexts += [Ctx(100 + i, "random", None, ["b"], [0.0]) for i in range(30)]
    picked = simulation.choose_contexts(contexts, 10, random.Random(0))
    assert sum(c.kind == "random" for c in picked) == 5
    assert sorted(c.quantile for c in picked if c.kind != "random") in (
        [0, 0, 1, 1, 2],
        [0, 1, 1, 2, 2],
        [0, 0, 1, 2, 2],
    )


def test_a_ten_split_into_two_tokens_reads_as_ten():
    """SmolLM2 writes 10 as "1" "0": P(10) = P("1") x P("0" next); "0 10 5" must not read as [0.1, 1.4, 5]."""
    steps = [
        TokenLogprob("\n", 0.0),
        TokenLogprob("1", 0.0),
        TokenLogprob(":", 0.0),
        TokenLogprob(" ", 0.0),
        TokenLogprob("0", math.log(0.9), {"0": math.log(0.9), "1": math.log(0.1)}),
        TokenLogprob(" ", 0.0),
        TokenLogprob("1", math.log(0.9), {"1": math.log(0.9), "5": math.log(0.1)}),
        TokenLogprob("0", math.log(0.8), {"0": math.log(0.8), " ": math.log(0.2)}),
        TokenLogprob(" ", 0.0),
        TokenLogprob("5", 0.0, {"5": 0.0}),
    ]
    text = "[ANSWER]:" + "".join(s.token for s in steps)
    sims = simulation.parse(text, [3], steps, "[ANSWER]:")
    # 10 with 0.9 x 0.8, 1 with 0.9 x 0.2, 5 with 0.1
    assert sims[0].from_logprobs and sims[0].values == pytest.approx([0.1, 7.2 + 0.18 + 0.5, 5.0])


def test_a_written_one_keeps_the_chance_that_a_zero_followed():
    steps = [
        TokenLogprob("\n", 0.0),
        TokenLogprob("1", 0.0),
        TokenLogprob(":", 0.0),
        TokenLogprob(" ", 0.0),
        TokenLogprob("1", math.log(0.5), {"1": math.log(0.5), "0": math.log(0.5)}),
        TokenLogprob(" ", math.log(0.75), {" ": math.log(0.75), "0": math.log(0.25)}),
        TokenLogprob("2", 0.0, {"2": 0.0}),
    ]
    text = "[ANSWER]:" + "".join(s.token for s in steps)
    sims = simulation.parse(text, [2], steps, "[ANSWER]:")
    assert sims[0].values == pytest.approx([0.5 * 0.75 * 1 + 0.5 * 0.25 * 10, 2.0])


def test_the_activating_half_spreads_over_the_whole_range_top_included():
    contexts = [Ctx(i, "quantile", i % 10, ["a"], [1.0 + i % 10]) for i in range(50)]
    contexts += [Ctx(100 + i, "random", None, ["b"], [0.0]) for i in range(30)]
    for seed in range(5):
        picked = simulation.choose_contexts(contexts, 10, random.Random(seed))
        assert sorted(c.quantile for c in picked if c.kind != "random") == [0, 2, 5, 7, 9]
    top = simulation.choose_contexts(contexts, 2, random.Random(0))
    assert [c.quantile for c in top if c.kind != "random"] == [9]


def test_guided_regex_accepts_exactly_the_expected_lines():
    import regex

    batch = [Ctx(1, "quantile", 0, ["a", "b"], [1, 0]), Ctx(2, "random", None, ["c"], [0])]
    pattern = regex.compile(simulation.answer_regex(batch))
    assert pattern.fullmatch("\n1: 10 0\n2: 3")
    assert not pattern.fullmatch("\n1: 10\n2: 3") and not pattern.fullmatch("\n1: 11 0\n2: 3")


@pytest.mark.slow
def test_simulation_through_the_stage_with_logprobs(explained_db, local_backend):  # noqa: F811
    db, latents = explained_db
    with ModelServer(local_backend) as server:
        config = ScoreConfig(
            backend="openai",
            model="smollm2",
            base_url=server.base_url,
            scorers="simulation",
            latents=f"{latents[0]}-{latents[1]}",
            guided="on",
            logprobs=True,
            simulation_contexts=4,
            simulation_batch=2,
        )
        first = asyncio.run(score(config, db, progress=False))
        again = asyncio.run(score(config, db, progress=False))
    assert first.scored + first.unscored == 2 and again.skipped_done == 2 and again.calls == 0
    options = query(db, "SELECT DISTINCT options FROM llm_calls WHERE purpose = 'simulation'")
    assert [json.loads(o)["top_logprobs"] for (o,) in options] == [15]  # OpenAI's count, not 5
    for latent, status, reason, r, headline, chance, detail in query(
        db, "SELECT latent, status, reason, correlation, score, chance, detail FROM scores WHERE scorer = 'simulation'"
    ):
        assert json.loads(chance)["score"] == 0.0
        rows = query(
            db,
            "SELECT e.simulated, x.activations, x.kind FROM score_examples e JOIN examples x "
            "ON x.latent = e.latent AND x.context_id = e.context_id AND x.split = 'test' "
            "WHERE e.latent = ? AND e.scorer = 'simulation'",
            [latent],
        )
        assert len(rows) == 4 and sum(k == "random" for _, _, k in rows) == 2
        scored = [(s, a, k) for s, a, k in rows if s is not None]
        assert all(len(s) == len(a) and all(0 <= v <= 10 for v in s) for s, a, _ in scored)
        if status == "scored":  # the pooled r, recomputed from the stored (float32) rows
            true = [abs(v) if k != "random" else 0.0 for _, a, k in scored for v in a]
            assert r == pytest.approx(pearson(true, [v for s, _, _ in scored for v in s]), rel=1e-4) and headline == r
            assert json.loads(detail)["tokens_from_logprobs"] == len(true)
        else:
            assert r is None and headline is None and reason
