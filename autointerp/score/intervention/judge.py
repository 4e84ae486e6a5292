"""The intervention scorer's LLM judge: prompts over steered and clean texts, and reading its answers.

Two questions, both adapted from Gur-Arieh et al.'s output metric (spec C), pure functions here:

- **judge** (scorer ``intervention``): numbered texts, each a neutral prompt and one continuation, about
  half of them steered; the judge answers one 0/1 digit per text, "was the explained feature amplified
  here?", read with the detection scorer's parser (``answers.parse_digits``). Gur-Arieh et al. ask
  instead which of three sets is the steered one; per-text answers give a balanced accuracy with a
  known chance level (0.5) over many judgements per latent, the same metric as detection.
- **choice** (scorer ``intervention_choice``): the latent's steered continuations as one numbered set
  among those of other latents of the same dictionary (Gur-Arieh et al.'s decoys, built here from
  live, explained latents at the same target KL, as the spec's pitfall recommends); the judge answers
  the number of the set the explanation describes. Chance is 1 / number of sets.

Texts are shown on one line each with corpus-like characters that could fake our answer marker
defused (``text.neutralise``), so a continuation cannot hijack the parse.
"""

from __future__ import annotations

import re

from ...text import answer_line, fill, neutralise, prompt_text

JUDGE_SYSTEM, JUDGE_USER = "score_intervention_system.txt", "score_intervention_user.txt"
CHOICE_SYSTEM, CHOICE_USER = "score_intervention_choice_system.txt", "score_intervention_choice_user.txt"
PROMPT_FILES = (JUDGE_SYSTEM, JUDGE_USER, CHOICE_SYSTEM, CHOICE_USER)


def shown_text(prompt: str, completion: str) -> str:
    """A prompt and its continuation as one line of a judge prompt."""
    text = (prompt + completion).replace("\r", "").replace("\n", "↵")
    return neutralise(text).strip()


def judge_messages(explanation: str, texts: list[str]) -> list[dict]:
    """System (fixed for every latent: a prefix cache serves it) and user message of one judge prompt."""
    numbered = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(texts))
    return [
        {"role": "system", "content": prompt_text(JUDGE_SYSTEM).strip()},
        {"role": "user", "content": fill(JUDGE_USER, explanation=neutralise(explanation), texts=numbered)},
    ]


def choice_messages(explanation: str, sets: list[list[str]]) -> list[dict]:
    """One multiple-choice prompt: ``sets[k]`` are the texts shown as set k + 1."""
    blocks = "\n\n".join(f"Set {k + 1}:\n" + "\n".join(f"- {t}" for t in texts) for k, texts in enumerate(sets))
    return [
        {"role": "system", "content": prompt_text(CHOICE_SYSTEM).strip()},
        {"role": "user", "content": fill(CHOICE_USER, explanation=neutralise(explanation), sets=blocks)},
    ]


def parse_choice(answer: str | None, n: int) -> tuple[int | None, str | None]:
    """(0-based set index, None) or (None, why the answer could not be read): one number 1..n on the
    line after the last "[ANSWER]:"; reasoning in <think>...</think> and text before the marker are
    ignored."""
    line, reason = answer_line(answer)
    if line is None:
        return None, reason
    line = line.strip()
    found = re.fullmatch(r"(?:set\s*)?(\d+)\s*\.?", line, re.I)
    if not found:
        return None, f"not a set number: {line[:80]!r}"
    value = int(found.group(1))
    if not 1 <= value <= n:
        return None, f"set {value} of {n}"
    return value - 1, None


def choice_regex(n: int) -> str:
    """Guided decoding of a choice answer after the prefilled marker: one digit 1..n (n <= 9)."""
    return f" [1-{n}]"
