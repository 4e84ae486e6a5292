"""Build an explainer's chat messages from one latent's explain-set examples (a pure function)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ExplainConfig
from .explainers import EXPLAINERS
from .output_side import OutputSide


@dataclass
class Example:
    """One stored context of a latent, as the explainer needs it."""

    kind: str  # 'top', 'quantile', 'random' or 'weak' (a weakest-activating window used as a negative), 'hard'
    quantile: int | None
    rank: int
    tokens: list[str]
    activations: list[float]


def choose_examples(examples: list[Example], config: ExplainConfig) -> tuple[list[Example], list[Example]]:
    """The activating examples to show (strongest quantile first) and the negatives (for an explainer
    shown them, as contrastive): the latent's hard negatives where it has them, else its random ones.

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
    wants_negatives = EXPLAINERS[config.explainer].negatives
    # hard negatives (look-alike windows where the latent is silent) replace the random ones where the
    # latent has them; no other explainer is shown any negatives
    hard = [e for e in examples if e.kind == "hard"]
    plain = [e for e in examples if e.kind in ("random", "weak")]
    negatives = (hard or plain)[: config.n_negatives] if wants_negatives else []
    return shown, negatives


def build_messages(
    examples: list[Example], latent_max: float, config: ExplainConfig, output: OutputSide | None = None
) -> list[dict]:
    """The chat messages of ``config.explainer`` for one latent's explain-set examples (and its ``output``
    side, for an explainer shown one)."""
    shown, negatives = choose_examples(examples, config)
    return EXPLAINERS[config.explainer].messages(shown, negatives, latent_max, config, output)
