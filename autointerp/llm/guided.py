"""Regex-guided decoding for the in-process backend: only tokens that keep the answer matchable.

The scorers ask for answers made of digits, spaces, newlines and colons ("[ANSWER]: 1 0 0 1"); a small
model asked for 25 digits in a row drifts into prose after a few. At each step we allow exactly the
tokens after which the text generated so far is still a prefix of a full match of the regex (checked
with the ``regex`` package's partial matching), and end-of-sequence once it matches in full. Among
the allowed tokens the model's own choice (greedy or sampled) stands, so guiding fixes the format of an
answer, not which answer it gives. vLLM does the same for any regex with its structured outputs.
"""

from __future__ import annotations

import functools
import re as _re

import regex

CANDIDATE_CHARS = _re.compile(r"[0-9 \n:]+")


@functools.lru_cache(maxsize=4)
def _candidate_tokens(tokenizer) -> tuple[tuple[int, str], ...]:
    """(id, text) of every token made only of the characters guided answers use."""
    found = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text and CANDIDATE_CHARS.fullmatch(text):
            found.append((token_id, text))
    return tuple(found)


class RegexGuide:
    """A ``prefix_allowed_tokens_fn`` for ``generate``: the answer after ``prompt_width`` tokens must
    match ``pattern`` in full."""

    def __init__(self, tokenizer, pattern: str, prompt_width: int):
        self.tokenizer = tokenizer
        self.pattern = regex.compile(pattern)
        self.prompt_width = prompt_width
        self.candidates = _candidate_tokens(tokenizer)
        self.eos = tokenizer.eos_token_id

    def allowed(self, text: str) -> list[int]:
        ids = [i for i, piece in self.candidates if self.pattern.fullmatch(text + piece, partial=True)]
        if self.pattern.fullmatch(text):
            ids.append(self.eos)
        return ids or [self.eos]  # nothing fits: stop, and let the parser report the answer

    def __call__(self, batch_id: int, input_ids) -> list[int]:  # noqa: ARG002 - generate's signature
        generated = input_ids[self.prompt_width :].tolist()
        return self.allowed(self.tokenizer.decode(generated, skip_special_tokens=True))
