"""Pure functions that turn stored examples into prompt text.

What the explainer sees follows delphi's default explainer (see shared/specs/explainer-prompts.md):
active tokens wrapped in << >> (runs of tokens above ``mark_threshold`` x the example's own maximum
share one pair) and, per example, the active tokens with their strength ceil(10 a / A_max) clipped to
[1, 10], A_max being the latent's largest activation in the whole corpus. We deliberately differ in
three ways: corpus characters that could be mistaken for our markers (< and >) or for an answer line
([EXPLANATION], [ANSWER]) are replaced before rendering, so corpus text can neither fake a mark nor hijack the
parse; newlines inside tokens are shown as ↵, so every excerpt stays on one line; and excerpts are
labelled "Excerpt i:" exactly as in the few-shot turns. Token lists (the output-centric explainers'
logit-lens and token-change tokens) are rendered the same safe way, each token quoted.
"""

from __future__ import annotations

import math

from ..text import clean_token, mark_runs, neutralise


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


def render_plain(tokens: list[str], index: int) -> str:
    """An excerpt without marks (a non-activating context)."""
    return f"Excerpt {index}: " + neutralise("".join(clean_token(t) for t in tokens)).strip()


def render_token_list(tokens) -> str:
    """Tokens as one line of quoted strings, strongest first (spaces kept visible inside the quotes;
    newlines shown as ↵; quotes and backslashes escaped), or "(none)"."""
    if not tokens:
        return "(none)"
    quoted = ('"' + clean_token(t).replace("\\", "\\\\").replace('"', '\\"') + '"' for t in tokens)
    return neutralise(", ".join(quoted))
