"""Build an explainer's chat messages from one latent's explain-set examples (a pure function)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ExplainConfig
from ..text import few_shot, fill, prompt_text
from .render import render_example, render_plain

SYSTEM = {
    "default": "explain_system.txt",
    "contrastive": "explain_system_contrastive.txt",
    "cot": "explain_system_cot.txt",
}
FEW_SHOT = {"default": "explain_fewshot.txt", "cot": "explain_fewshot_cot.txt"}


@dataclass
class Example:
    """One stored context of a latent, as the explainer needs it."""

    kind: str  # 'top', 'quantile' or 'random'
    quantile: int | None
    rank: int
    tokens: list[str]
    activations: list[float]


def choose_examples(examples: list[Example], config: ExplainConfig) -> tuple[list[Example], list[Example]]:
    """The activating examples to show (strongest quantile first) and the negatives (contrastive only).

    Only explain-set examples are ever passed in; the choice among them is deterministic.
    """
    top = sorted((e for e in examples if e.kind == "top"), key=lambda e: e.rank)
    quantile = sorted((e for e in examples if e.kind == "quantile"), key=lambda e: (-(e.quantile or 0), e.rank))
    n = config.n_examples
    if config.examples == "top":
        shown = top[:n]
    elif config.examples == "quantile":
        shown = quantile[:n]
    else:  # mix: a fifth from the top, the rest from the quantiles
        n_top = max(1, n // 5)
        shown = top[:n_top] + quantile[: n - n_top]
    negatives = (
        [e for e in examples if e.kind == "random"][: config.n_negatives] if config.explainer == "contrastive" else []
    )
    return shown, negatives


def build_messages(examples: list[Example], latent_max: float, config: ExplainConfig) -> list[dict]:
    shown, negatives = choose_examples(examples, config)
    rendered = "\n".join(
        render_example(e.tokens, e.activations, latent_max, i + 1, config.mark_threshold, config.show_activations)
        for i, e in enumerate(shown)
    )
    messages = [{"role": "system", "content": prompt_text(SYSTEM[config.explainer]).strip()}]
    if config.explainer in FEW_SHOT:
        messages += few_shot(FEW_SHOT[config.explainer])
    if config.explainer == "contrastive":
        user = fill(
            "explain_user_contrastive.txt",
            examples=rendered,
            negatives="\n".join(render_plain(e.tokens, i + 1) for i, e in enumerate(negatives)),
        )
    else:
        user = fill("explain_user.txt", examples=rendered)
    messages.append({"role": "user", "content": user})
    return messages
