"""Extract the explanation from an answer; anything else is "unparsed" with a reason.

Rules: reasoning in <think>...</think> is dropped; the explanation is the rest of the line after the
**last** "[EXPLANATION]:" (so reasoning or quoted corpus text before it cannot take its place, and the
corpus cannot contain the marker at all: rendering defuses it); it must contain words and be at most
``MAX_LENGTH`` characters.
"""

from __future__ import annotations

import re

MAX_LENGTH = 400
_MARK = re.compile(r"\[\s*EXPLANATION\s*\]\s*:", re.I)
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def parse_explanation(answer: str | None) -> tuple[str | None, str | None]:
    """(explanation, None) or (None, reason it could not be parsed)."""
    if answer is None or not answer.strip():
        return None, "empty answer"
    text = _THINK.sub("", answer)
    if re.search(r"<think>", text, re.I):
        return None, "the reasoning (<think>) never finished"
    marks = list(_MARK.finditer(text))
    if not marks:
        return None, "no '[EXPLANATION]:' line in the answer"
    rest = text[marks[-1].end() :].strip()
    line = rest.splitlines()[0].strip() if rest else ""
    line = line.strip("*_`\"' ").strip()
    if not line:
        return None, "nothing after the last '[EXPLANATION]:'"
    if not re.search(r"[^\W\d_]{2,}", line):
        return None, f"no words in the explanation: {line[:80]!r}"
    if len(line) > MAX_LENGTH:
        return None, f"explanation longer than {MAX_LENGTH} characters"
    return line, None
