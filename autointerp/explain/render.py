"""Pure functions that turn stored examples into prompt text.

What the explainer sees follows delphi's default explainer (see shared/specs/explainer-prompts.md):
active tokens wrapped in << >> (runs of tokens above ``mark_threshold`` x the example's own maximum
share one pair) and, per example, the active tokens with their strength ceil(10 a / A_max) clipped to
[1, 10], A_max being the latent's largest activation in the whole corpus. We deliberately differ in
three ways: corpus characters that could be mistaken for our markers (< and >) or for an answer line
([EXPLANATION], [ANSWER]) are replaced before rendering, so corpus text can neither fake a mark nor hijack the
parse; newlines inside tokens are shown as ↵, so every excerpt stays on one line; and excerpts are
labelled "Excerpt i:" exactly as in the few-shot turns.
"""

from __future__ import annotations

import math
import re
import string

from .. import resources

PROMPTS_DIR = resources.prompts()
OPEN, CLOSE = "<<", ">>"
_ANSWER_MARK = re.compile(r"\[\s*(explanation|answer)\s*\]", re.I)


def clean_token(token: str) -> str:
    """A corpus token made safe to show between our markers."""
    return token.replace("\r", "").replace("\n", "↵").replace("<", "‹").replace(">", "›")


def neutralise(text: str) -> str:
    """Corpus text with anything that reads as our answer line defused."""
    return _ANSWER_MARK.sub(lambda m: f"({m.group(1).lower()})", text)


def strength(activation: float, latent_max: float) -> int:
    """ceil(10 |a| / A_max) clipped to [1, 10]; 0 where the latent is silent. Signed latents (AbsTopK,
    neurons) are shown by magnitude, as their quantiles are drawn."""
    magnitude = abs(activation)
    if latent_max <= 0 or magnitude == 0:
        return 0
    return max(1, min(10, math.ceil(10 * magnitude / abs(latent_max))))


def render_example(
    tokens: list[str],
    activations: list[float],
    latent_max: float,
    index: int,
    mark_threshold: float = 0.3,
    show_activations: bool = True,
    max_listed: int = 11,
) -> str:
    """One excerpt: the marked text and, optionally, a line with the active tokens' strengths."""
    peak = max((abs(a) for a in activations), default=0.0)
    active = [peak > 0 and abs(a) > mark_threshold * peak for a in activations]
    shown = [clean_token(t) for t in tokens]
    listed = [
        f"{shown[i].strip() or repr(shown[i])} ({strength(activations[i], latent_max)})"
        for i, on in enumerate(active)
        if on
    ][:max_listed]
    line = f"Excerpt {index}: " + neutralise(mark_runs(shown, active)).strip()
    if show_activations and listed:
        line += "\nActive: " + ", ".join(listed)
    return line


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


def render_plain(tokens: list[str], index: int) -> str:
    """An excerpt without marks (a non-activating context)."""
    return f"Excerpt {index}: " + neutralise("".join(clean_token(t) for t in tokens)).strip()


prompt_text = resources.prompt_text


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
