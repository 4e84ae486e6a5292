"""A scripted backend for the OpenAI-protocol test server (tests/openai_server.py), for tests of the
run bookkeeping, kill-and-resume and retries: it answers at once, in the form each stage parses, with
no model. It sits behind a real HTTP server, at the network edge, and never stands in for a figure we
report: which digits it answers is a hash of the excerpt, not a judgement.
"""

from __future__ import annotations

import hashlib
import re

from autointerp.llm.base import Backend, Completion, GenerateOptions

_EXCERPT = re.compile(r"^(\d+)\.? ", re.M)


def excerpt_count(text: str) -> int:
    """How many numbered excerpts ("1 " or "1. ", "2 ", ...) the prompt lists: the longest run from 1."""
    seen = {int(m.group(1)) for m in _EXCERPT.finditer(text)}
    n = 0
    while n + 1 in seen:
        n += 1
    return n


class AnsweringBackend(Backend):
    """Explain prompts get "[EXPLANATION]: ..."; scorer prompts get "[ANSWER]: " and one 0/1 digit per
    excerpt (a hash of the prompt, so a repeated prompt gets the same answer)."""

    kind = "scripted"
    model = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    async def generate(self, messages: list[dict], options: GenerateOptions) -> Completion:
        self.calls += 1
        prompt = "\n".join(m["content"] for m in messages)
        if "[EXPLANATION]" in prompt:
            text = "[EXPLANATION]: words of one topic"
        else:
            digest = hashlib.sha256(prompt.encode()).digest()
            n = excerpt_count(messages[-1]["content"])
            text = "[ANSWER]: " + " ".join(str(digest[i % len(digest)] & 1) for i in range(n))
        return Completion(text=text, prompt_tokens=len(prompt) // 4, completion_tokens=len(text) // 4)
