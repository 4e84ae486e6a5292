"""The ``output_choice`` judge (Gur-Arieh et al.'s output metric, spec C): the tagged lines of a set, the
one user message holding the instructions, the explanation and three sets, and reading the answer.

Pure functions. The judge reasons on its first line and names the set on its second; the answer is the
first integer on its last line, as in their code (``to_int`` of the last line), except that an answer
with no such integer, or one outside the sets, is unscored with its reason rather than an error.
"""

from __future__ import annotations

import re

from ...text import THINK, fill, neutralise

OUTPUT_JUDGE = "score_output_choice.txt"


def tagged_line(target_kl: float, prompt: str, completion: str) -> str:
    """One line of a set: ``<+0.25>'The explanation is simple:': '<completion>'``, with newlines and
    carriage returns escaped (so every line of the set is one line of the prompt)."""
    escaped = completion.replace("\r", "\\r").replace("\n", "\\n")
    return f"<{target_kl:+g}>'{prompt}': '{escaped}'"


def set_block(lines: list[tuple[float, str, str]]) -> str:
    """A set's lines, (target KL, prompt, completion) each, one per line."""
    return "\n".join(tagged_line(*line) for line in lines)


def output_choice_messages(explanation: str, sets: list[str]) -> list[dict]:
    """The judge's one user message: instructions, the explanation, then ``# Set k`` and its block."""
    blocks = "\n\n".join(f"# Set {k + 1}\n{block}" for k, block in enumerate(sets))
    return [{"role": "user", "content": fill(OUTPUT_JUDGE, explanation=neutralise(explanation), sets=blocks)}]


def parse_last_line_choice(answer: str | None, n: int) -> tuple[int | None, str | None]:
    """(0-based set index, None), or (None, why the answer cannot be read): the first integer on the
    last non-empty line of the answer (reasoning in <think>...</think> dropped first), which must be
    1..n."""
    if answer is None or not answer.strip():
        return None, "empty answer"
    lines = [line.strip() for line in THINK.sub("", answer).splitlines() if line.strip()]
    if not lines:
        return None, "only reasoning, no answer"
    found = re.search(r"\d+", lines[-1])
    if found is None:
        return None, f"no set number on the last line: {lines[-1][:80]!r}"
    value = int(found.group())
    if not 1 <= value <= n:
        return None, f"set {value} of {n}"
    return value - 1, None
