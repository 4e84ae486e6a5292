"""The ``output_choice`` scorer (Gur-Arieh et al.'s output metric): the judge's prompt and answer parsing
as pure functions, and the plumbing end to end: the embedded model steered over the KL schedule, the
judge a scripted backend behind a real OpenAI-protocol server on 127.0.0.1 (it answers a fixed reply, so
no accuracy is measured here, only what is asked, recorded and stored)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import duckdb
import pytest

from autointerp.config import ScoreConfig
from autointerp.errors import AutointerpError
from autointerp.llm.base import Backend, Completion
from autointerp.score.intervention.output_judge import (
    output_choice_messages,
    parse_last_line_choice,
    set_block,
    tagged_line,
)
from autointerp.score.intervention.store import PLANTED_REASON
from autointerp.score.scorers.output_choice import decoy_pool
from autointerp.score.stage import score as score_stage

from .conftest import query, with_explanations
from .openai_server import ModelServer

PROMPTS = ["The explanation is simple:", "I think", "We"]
LINE = re.compile(r"<([+-]\d+(?:\.\d+)?)>'(The explanation is simple:|I think|We)': '([^\n]*)'")


def test_tagged_lines_sets_and_the_last_line_rule():
    assert tagged_line(0.25, "I think", " so.\nYes\r") == "<+0.25>'I think': ' so.\\nYes\\r'"
    assert tagged_line(-0.5, "We", "") == "<-0.5>'We': ''"
    block = set_block([(0.25, "We", " a"), (-0.25, "We", " b")])
    assert block == "<+0.25>'We': ' a'\n<-0.25>'We': ' b'"
    [message] = output_choice_messages("rivers", [block, "x", "y"])
    assert message["role"] == "user"
    text = message["content"]
    assert "Explanation: rivers\n\n# Set 1\n<+0.25>'We': ' a'\n<-0.25>'We': ' b'\n\n# Set 2\nx\n\n# Set 3\ny" in text
    assert text.index("first line") < text.index("second line") < text.index("Explanation:")
    # the answer is the first integer on the last non-empty line
    assert parse_last_line_choice("Set 1 has rivers, but 3 more so.\n3", 3) == (2, None)
    assert parse_last_line_choice("Reason: 1 mention.\nSet 2, maybe 1\n\n", 3) == (1, None)
    assert parse_last_line_choice("<think>answer 1</think>words\n2", 3) == (1, None)
    assert parse_last_line_choice("It is set 2.\nI cannot tell.", 3) == (
        None,
        "no set number on the last line: 'I cannot tell.'",
    )
    assert parse_last_line_choice("reason\n4", 3) == (None, "set 4 of 3")
    assert parse_last_line_choice("reason\n0", 3) == (None, "set 0 of 3")
    assert parse_last_line_choice("  \n", 3) == (None, "empty answer")
    assert parse_last_line_choice(None, 3) == (None, "empty answer")
    # the decoy pool: a seeded draw of live latents, the same in every run
    live = list(range(100))
    assert decoy_pool(live, 22) == decoy_pool(list(reversed(live)), 22) != decoy_pool(live, 23)
    assert len(decoy_pool(live, 22)) == 12 and set(decoy_pool(live, 22)) <= set(live)
    for bad in ("", "+0.25,+0.25", "0.5,0", "a", "+0.5,nan"):
        with pytest.raises(AutointerpError, match="--output-schedule"):
            ScoreConfig(scorers="output_choice", output_schedule=bad)
    with pytest.raises(AutointerpError, match="--output-tokens"):
        ScoreConfig(scorers="output_choice", output_tokens=0)
    assert ScoreConfig(scorers="output_choice").output_schedule_values() == [0.25, 0.5, -0.25, -0.5]


def test_judge_prompt_matches_golden():
    sets = [
        set_block([(kl, p, f" {word} {k}") for kl in (0.25, 0.5, -0.25, -0.5) for p in PROMPTS])
        for k, word in enumerate(["rivers flow", "dates\nand years", "units"])
    ]
    rendered = json.dumps(output_choice_messages("names of rivers", sets), indent=1, ensure_ascii=False) + "\n"
    path = Path(__file__).parent / "golden" / "score_output_choice.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(rendered, encoding="utf-8")
    assert rendered == path.read_text(encoding="utf-8"), (
        "prompt changed: rerun with UPDATE_GOLDEN=1 and review the diff"
    )


class Scripted(Backend):
    """Answers every prompt with ``reply`` and keeps the prompts it was sent."""

    kind = "scripted"
    model = "scripted"

    def __init__(self, reply: str):
        self.reply, self.prompts = reply, []

    async def generate(self, messages, options):
        self.prompts.append(messages)
        return Completion(text=self.reply, prompt_tokens=100, completion_tokens=5)


def run(db, judge: Scripted, **settings):
    with ModelServer(judge) as server:
        config = ScoreConfig(
            scorers="output_choice", output_tokens=3, backend="openai", model="scripted", base_url=server.base_url,
            **settings,
        )  # fmt: skip
        return asyncio.run(score_stage(config, db, progress=False))


@pytest.mark.slow
def test_output_choice_asks_three_sets_of_twelve_and_stores_the_answer(collected_db, tmp_path):
    db = tmp_path / "output.duckdb"
    latent, planted = with_explanations(collected_db, db, ["names of rivers", "the word 'the'"])
    con = duckdb.connect(str(db))
    try:  # the second latent recorded as planted: no decoder weights to steer, never a decoy
        run_id = con.execute("SELECT run_id FROM latent_stats LIMIT 1").fetchone()[0]
        con.execute(
            "INSERT INTO planted_latents VALUES (?, ?, '{}', 'the', 'word_list', 0.01, 1.0, '{}', 0.01, 0.01, "
            "true, 0.01)",
            [run_id, planted],
        )
        live = [r[0] for r in con.execute("SELECT latent FROM latent_stats WHERE n_firing > 0").fetchall()]
    finally:
        con.close()

    judge = Scripted("The second set is about rivers.\n2")
    result = run(db, judge)
    assert (result.scored, result.unscored) == (1, 1)
    assert result.resources["output_schedule"]["steered"] == 3  # the latent and its two decoys
    [messages] = judge.prompts  # the planted latent asks nothing
    [message] = messages
    sets = re.split(r"^# Set \d\n", message["content"].split("Explanation: names of rivers\n\n", 1)[1], flags=re.M)
    assert sets[0] == "" and len(sets) == 4
    shown = []
    for block in sets[1:]:
        lines = block.strip().split("\n")
        assert len(lines) == 12 and all(LINE.fullmatch(line) for line in lines)
        tags = [(LINE.fullmatch(line)[1], LINE.fullmatch(line)[2]) for line in lines]
        assert tags == [(kl, p) for kl in ("+0.25", "+0.5", "-0.25", "-0.5") for p in PROMPTS]
        shown.append(block.strip())

    rows = query(db, "SELECT latent, scorer, status, reason, score, accuracy, chance, detail, n_examples, "
                 "ci_low, ci_high FROM scores ORDER BY latent")  # fmt: skip
    (_, scorer, status, reason, score, accuracy, chance, detail, n, low, high), refused = rows
    detail = json.loads(detail)
    assert scorer == "output_choice" and status == "scored" and reason is None and n == 1
    assert json.loads(chance)["score"] == pytest.approx(1 / 3)
    assert detail["chosen"] == 1 and score == accuracy == float(detail["correct"] == 1)
    assert (low, high) == (
        (0.0, pytest.approx(0.7935, abs=1e-3)) if score == 0 else (pytest.approx(0.2065, abs=1e-3), 1.0)
    )
    # the true set's position is recorded, and the set shown there is this latent's stored continuations
    sets_of = detail["sets"]
    assert len(sets_of) == 3 and sets_of[detail["correct"]] == latent
    stored = query(
        db,
        "SELECT latent, target_kl, prompt, completion, steered, achieved_kl FROM interventions "
        "WHERE config_hash = ? ORDER BY latent, completion_id",
        [detail["calibration"]["intervention_config"]],
    )
    assert {r[0] for r in stored} == set(sets_of) and len(stored) == 36 and all(r[4] for r in stored)
    for k, shown_latent in enumerate(sets_of):
        assert shown[k] == set_block([(r[1], r[2], r[3]) for r in stored if r[0] == shown_latent])
    for step in detail["calibration"]["schedule"]:
        assert abs(step["achieved_kl"] - abs(step["target_kl"])) <= 0.1 * abs(step["target_kl"])
        assert (step["scale"] > 0) == (step["target_kl"] > 0)
    # decoys: other live latents of the same dictionary, never the planted one
    decoys = [lat for lat in sets_of if lat != latent]
    assert len(decoys) == 2 and set(decoys) <= set(live) and planted not in decoys
    assert set(decoys) <= set(detail["decoys_tried"])
    examples = query(db, "SELECT context_id, variant, label, prediction FROM score_examples WHERE latent = ?", [latent])
    assert sorted(r[0] for r in examples) == list(range(12))
    assert all(r[1:] == ("steered", True, score == 1.0) for r in examples)
    # the planted latent: unscored, with the reason, and nothing steered or asked
    assert refused[1:5] == ("output_choice", "unscored", PLANTED_REASON, None)

    # another judge setting reuses the stored continuations; an answer without a number is unscored
    vague = Scripted("They all look alike.\nI cannot tell.")
    again = run(db, vague, max_tokens=64)
    assert again.resources["output_schedule"]["steered"] == 0 and len(vague.prompts) == 1
    assert vague.prompts[0][0]["content"] == message["content"]  # the same sets in the same order
    status, reason, score = query(
        db, "SELECT status, reason, score FROM scores WHERE run_id = ? AND latent = ?", [again.run_id, latent]
    )[0]
    assert status == "unscored" and score is None
    assert reason == "no readable choice: no set number on the last line: 'I cannot tell.'"

    # a schedule the latent cannot reach: unscored with the reason, no judge call
    unreachable = Scripted("x\n1")
    third = run(db, unreachable, output_schedule="+200", latents=str(latent))
    assert third.unscored == 1 and unreachable.prompts == []
    reason = query(db, "SELECT reason FROM scores WHERE run_id = ?", [third.run_id])[0][0]
    assert reason.startswith("steering cannot reach target KL +200 ± 20 nats: the largest KL is ")
