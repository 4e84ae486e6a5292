"""Text utilities shared by the explain and score stages: prompt files, corpus text made safe to show,
and the answer line an LLM writes after a marker such as "[ANSWER]:".

Prompts are text files in the repository's ``prompts/`` folder, read by ``prompt_text`` only; rendering
them is pure (``fill``, ``few_shot``). Corpus text is shown with the characters that could fake our
marks (``<<`` ``>>``) or an answer line (``[EXPLANATION]``, ``[ANSWER]``) defused, so it can hijack
neither the rendering nor the parse.
"""

from __future__ import annotations

import re
import string
from functools import cache

from . import resources

OPEN, CLOSE = "<<", ">>"
_ANSWER_MARK = re.compile(r"\[\s*(explanation|answer)\s*\]", re.I)
THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
"""Reasoning the model wrapped in <think>...</think>: dropped before an answer is read."""


# ------------------------------------------------------------------------------------------------ prompts


def prompt_text(name: str) -> str:
    """The text of the prompt file ``prompts/name`` (the one place prompt files are read: through
    ``importlib.resources``, so an installed wheel works as well as a checkout)."""
    return resources.prompt_text(name)


def fill(name: str, **values: str) -> str:
    """Render the template ``prompts/name`` with its $placeholders."""
    return string.Template(prompt_text(name)).substitute(**values).strip()


def few_shot(name: str) -> list[dict]:
    """Chat turns from a few-shot file made of '=== user ===' / '=== assistant ===' sections."""
    turns = []
    for block in re.split(r"^=== (user|assistant) ===\n", prompt_text(name), flags=re.M)[1:]:
        if block in ("user", "assistant"):
            turns.append({"role": block, "content": ""})
        else:
            turns[-1]["content"] = block.strip()
    return turns


# ------------------------------------------------------------------------------------------- corpus text


def clean_token(token: str) -> str:
    """A corpus token made safe to show between our markers."""
    return token.replace("\r", "").replace("\n", "↵").replace("<", "‹").replace(">", "›")


def hide_special(tokens: list[str], token_ids: list[int] | None, special_ids: frozenset[int]) -> list[str]:
    """``tokens`` with each special token (BOS, EOS, padding: the tokenizer's ``all_special_ids``) made
    an empty string, so no excerpt shown to the explainer or a scorer shows one: a window at the start of
    a sequence would otherwise give itself away by its BOS."""
    if not special_ids or token_ids is None:
        return list(tokens)
    return ["" if i in special_ids else t for t, i in zip(tokens, token_ids, strict=True)]


def neutralise(text: str) -> str:
    """Corpus text with anything that reads as our answer line defused."""
    return _ANSWER_MARK.sub(lambda m: f"({m.group(1).lower()})", text)


def mark_runs(tokens: list[str], marked: list[bool]) -> str:
    """Tokens joined, each maximal run of marked tokens wrapped in one << >> pair."""
    parts: list[str] = []
    for i, (token, on) in enumerate(zip(tokens, marked, strict=True)):
        if on and (i == 0 or not marked[i - 1]):
            parts.append(OPEN)
        parts.append(token)
        if on and (i == len(tokens) - 1 or not marked[i + 1]):
            parts.append(CLOSE)
    return "".join(parts)


# --------------------------------------------------------------------------------------------- answers


@cache
def answer_mark(marker: str) -> re.Pattern:
    """The pattern of an answer marker such as "[ANSWER]:" (spaces and case free), from its name."""
    return re.compile(rf"\[\s*{marker}\s*\]\s*:", re.I)


def answer_line(
    answer: str | None, marker: str = "ANSWER", *, unfinished_reasoning: bool = True, missing: str = ""
) -> tuple[str | None, str | None]:
    """(the first line after the last "[marker]:", None) or (None, why there is none).

    Reasoning in <think>...</think> is dropped first, and only the last marker counts, so a marker
    quoted in the reasoning or in an excerpt cannot stand in for the answer. ``unfinished_reasoning=False``
    refuses an answer whose <think> never closes; ``missing`` is the reason given when no marker is found
    (default "no '[marker]:' line")."""
    if answer is None or not answer.strip():
        return None, "empty answer"
    text = THINK.sub("", answer)
    if not unfinished_reasoning and re.search(r"<think>", text, re.I):
        return None, "the reasoning (<think>) never finished"
    marks = list(answer_mark(marker).finditer(text))
    if not marks:
        return None, missing or f"no '[{marker}]:' line"
    rest = text[marks[-1].end() :].strip()
    return (rest.splitlines()[0] if rest else ""), None
