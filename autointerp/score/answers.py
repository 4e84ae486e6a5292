"""Read a classifier scorer's answer: one 0/1 digit per excerpt after the last "[ANSWER]:".

Anything else (no marker, the wrong number of digits, other characters) leaves the whole batch
unscored with a reason; it never becomes a prediction. Reasoning in <think>...</think> and any text
before the last marker are ignored, so an excerpt quoted in the reasoning cannot stand in for the
answer. With logprobs, each digit's probability of being 1 is P(1) / (P(0) + P(1)) over the top
alternatives at that token (tokens are matched exactly, so a "10" is neither digit).
"""

from __future__ import annotations

import math
import re

from ..llm.base import TokenLogprob
from ..text import answer_line, answer_mark

_MARK = answer_mark("ANSWER")


def parse_digits(answer: str | None, n: int) -> tuple[list[bool] | None, str | None]:
    """(n predictions, None) or (None, why the answer could not be read)."""
    line, reason = answer_line(answer)
    if line is None:
        return None, reason
    items = [t for t in re.split(r"[\s,;\[\]]+", line) if t]
    if not items:
        return None, "nothing after the last '[ANSWER]:'"
    if any(t not in ("0", "1") for t in items):
        return None, f"not a list of 0/1 digits: {line[:80]!r}"
    if len(items) != n:
        return None, f"{len(items)} digits for {n} excerpts"
    return [t == "1" for t in items], None


def digit_probabilities(
    answer: str, logprobs: list[TokenLogprob] | None, n: int, prefill: str = ""
) -> list[float] | None:
    """P(1) for each of the n digits after the last marker, from the tokens' top logprobs; None when the
    tokens cannot be matched one to one with the digits. ``prefill`` is the start of the answer the model
    was given (it has no logprobs; the marker may be in it)."""
    if not logprobs:
        return None
    text = prefill + "".join(t.token for t in logprobs)
    marks = list(_MARK.finditer(text))
    if not marks:
        return None
    start = marks[-1].end()
    probabilities, offset = [], len(prefill)
    for step in logprobs:
        begin, offset = offset, offset + len(step.token)
        if begin < start or step.token.strip() not in ("0", "1"):
            continue
        p0 = sum(math.exp(lp) for tok, lp in step.top.items() if tok.strip() == "0")
        p1 = sum(math.exp(lp) for tok, lp in step.top.items() if tok.strip() == "1")
        if p0 + p1 == 0:
            chosen = math.exp(step.logprob)
            p1, p0 = (chosen, 1 - chosen) if step.token.strip() == "1" else (1 - chosen, chosen)
        probabilities.append(p1 / (p0 + p1))
    return probabilities if len(probabilities) == n else None
