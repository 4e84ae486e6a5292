"""The in-process transformers backend: concurrent requests are batched, logprobs are consistent."""

from __future__ import annotations

import asyncio

import pytest

from autointerp.llm.base import GenerateOptions
from autointerp.llm.local_backend import LocalBackend

pytestmark = pytest.mark.slow


def test_concurrent_requests_share_a_batch_and_logprobs_are_greedy():
    backend = LocalBackend()
    options = GenerateOptions(max_tokens=6, logprobs=True, top_logprobs=3)
    questions = ["What colour is the sky?", "Name a fruit.", "What is two plus two?"]

    async def run():
        try:
            return await asyncio.gather(
                *[backend.generate([{"role": "user", "content": q}], options) for q in questions]
            )
        finally:
            await backend.aclose()

    results = asyncio.run(run())
    assert backend.batches == [3]  # one generate call for the three requests
    for completion in results:
        assert completion.text.strip() and completion.prompt_tokens > 10
        assert len(completion.logprobs) == completion.completion_tokens > 0
        for step in completion.logprobs:
            # Greedy decoding: the chosen token is the most likely one.
            assert step.logprob <= 0 and step.logprob == pytest.approx(max(step.top.values()), abs=1e-5)
    # Different prompts in one left-padded batch still get their own answers.
    assert len({c.text for c in results}) == 3


def test_batch_answers_equal_single_answers():
    backend = LocalBackend()
    options = GenerateOptions(max_tokens=8)
    prompts = [[{"role": "user", "content": "Say hello."}], [{"role": "user", "content": "List three animals."}]]

    async def run():
        try:
            together = await asyncio.gather(*[backend.generate(p, options) for p in prompts])
            alone = [await backend.generate(p, options) for p in prompts]
            return together, alone
        finally:
            await backend.aclose()

    together, alone = asyncio.run(run())
    assert [c.text for c in together] == [c.text for c in alone]
    # count_tokens (used to report the prefix-cacheable share of prompts) counts as generate does.
    assert [backend.count_tokens(p) for p in prompts] == [c.prompt_tokens for c in alone]
