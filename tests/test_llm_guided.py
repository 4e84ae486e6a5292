"""Regex-guided decoding on the embedded model's tokenizer and model."""

from __future__ import annotations

import asyncio

import pytest

from autointerp.llm.base import GenerateOptions
from autointerp.llm.guided import RegexGuide
from autointerp.score.answers import parse_digits

pytestmark = pytest.mark.slow  # the embedded model, in process


def test_guide_allows_exactly_the_tokens_that_keep_a_match_possible(local_backend):
    tok = local_backend._tokenizer
    guide = RegexGuide(tok, r"( [01]){3}", prompt_width=0)
    texts = {i: tok.decode([i]) for i in guide.allowed("")}
    assert texts and all(t.startswith(" ") for t in texts.values())
    assert {tok.decode([i]) for i in guide.allowed(" 1")} == {" "} or all(
        t[0] == " " for t in (tok.decode([i]) for i in guide.allowed(" 1"))
    )
    assert all(tok.decode([i]).strip() in ("0", "1", "") for i in guide.allowed(" 1 "))
    assert guide.allowed(" 1 0 1") == [tok.eos_token_id]  # complete: only the end
    assert guide.allowed("x") == [tok.eos_token_id]  # no way on: stop, the parser reports it


def test_guided_generation_gives_a_readable_answer(local_backend):
    messages = [{"role": "user", "content": "Write a short poem about rivers."}]  # an answer it would not give
    options = GenerateOptions(max_tokens=40, prefill="[ANSWER]:", regex=r"( [01]){7}")
    completion = asyncio.run(local_backend.generate(messages, options))
    predictions, reason = parse_digits(options.prefill + completion.text, 7)
    assert reason is None and len(predictions) == 7, completion.text
    free = asyncio.run(local_backend.generate(messages, GenerateOptions(max_tokens=40)))
    assert parse_digits(free.text, 7)[0] is None  # unguided, the same request is not an answer
