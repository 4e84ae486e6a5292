"""Extract the explanation from an answer; anything else is "unparsed" with a reason.

Rules: reasoning in <think>...</think> is dropped; the explanation is the rest of the line after the
**last** "[EXPLANATION]:" (so reasoning or quoted corpus text before it cannot take its place, and the
corpus cannot contain the marker at all: rendering defuses it); it must contain words and be at most
``MAX_LENGTH`` characters.
"""

from __future__ import annotations

import re

from ..text import answer_line

MAX_LENGTH = 400


def parse_explanation(answer: str | None) -> tuple[str | None, str | None]:
    """(explanation, None) or (None, reason it could not be parsed)."""
    line, reason = answer_line(
        answer, "EXPLANATION", unfinished_reasoning=False, missing="no '[EXPLANATION]:' line in the answer"
    )
    if line is None:
        return None, reason
    line = line.strip().strip("*_`\"' ").strip()
    if not line:
        return None, "nothing after the last '[EXPLANATION]:'"
    if not re.search(r"[^\W\d_]{2,}", line):
        return None, f"no words in the explanation: {line[:80]!r}"
    if len(line) > MAX_LENGTH:
        return None, f"explanation longer than {MAX_LENGTH} characters"
    return line, None
