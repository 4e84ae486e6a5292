"""The detection/fuzzing answer parser: malformed, partial, over-long and reasoning-wrapped answers
become unscored with a reason, never predictions; probabilities come from the digits' logprobs."""

from __future__ import annotations

import math

import pytest

from autointerp.llm.base import TokenLogprob
from autointerp.score.answers import digit_probabilities, parse_digits


def test_a_clean_answer():
    assert parse_digits("[ANSWER]: 1 0 0 1", 4) == ([True, False, False, True], None)
    assert parse_digits("[answer] : 1,0,[1]", 3) == ([True, False, True], None)


@pytest.mark.parametrize(
    "answer, reason",
    [
        (None, "empty answer"),
        ("   ", "empty answer"),
        ("1 0 0 1", "no '[ANSWER]:' line"),
        ("[ANSWER]:", "nothing after the last '[ANSWER]:'"),
        ("[ANSWER]: 1 0", "2 digits for 4 excerpts"),  # partial
        ("[ANSWER]: 1 0 0 1 1", "5 digits for 4 excerpts"),  # over-long
        ("[ANSWER]: 1 0 yes 1", "not a list of 0/1 digits"),
        ("[ANSWER]: 1 0 2 1", "not a list of 0/1 digits"),
        ("[ANSWER]: 10 0 1", "not a list of 0/1 digits"),
    ],
)
def test_unreadable_answers_give_a_reason_and_no_prediction(answer, reason):
    predictions, why = parse_digits(answer, 4)
    assert predictions is None and reason in why


def test_reasoning_and_quoted_markers_before_the_last_one_are_ignored():
    answer = "<think>[ANSWER]: 0 0 0 0 is wrong</think>Excerpt 2 says '[ANSWER]: 1 1 1 1'.\n[ANSWER]: 1 0 1 0\nDone."
    assert parse_digits(answer, 4) == ([True, False, True, False], None)


def test_unfinished_reasoning_is_unscored():
    predictions, why = parse_digits("<think>excerpt 1 fits, [ANSWER]: 1 0", 4)
    assert predictions is None and why


def test_probabilities_from_logprobs_follow_the_digits_after_the_prefilled_marker():
    steps = [
        TokenLogprob(" ", 0.0),
        TokenLogprob("1", math.log(0.8), {"1": math.log(0.8), "0": math.log(0.2)}),
        TokenLogprob(" ", 0.0),
        TokenLogprob("0", math.log(0.6), {"0": math.log(0.6), "1": math.log(0.3)}),
    ]
    assert digit_probabilities("[ANSWER]: 1 0", steps, 2, "[ANSWER]:") == pytest.approx([0.8, 1 / 3])
    assert digit_probabilities("[ANSWER]: 1 0", steps, 3, "[ANSWER]:") is None  # cannot match one to one
    assert digit_probabilities("[ANSWER]: 1 0", None, 2) is None
