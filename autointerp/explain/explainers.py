"""The explainers, one object each behind one protocol, in one table (``EXPLAINERS``) that the explain
stage reads: the prompt files an explainer uses (hashed into the explanation's identity) and the chat
messages it builds from one latent's explain-set examples (a pure function).

Adding an explainer is one class (or one ``PromptExplainer`` with its own prompt files) and one line in
the table; its name must also be one of ``config.EXPLAINERS``, the names a user may pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..config import ExplainConfig
from ..text import few_shot, fill, prompt_text
from .render import render_example, render_plain

USER = "explain_user.txt"
USER_CONTRASTIVE = "explain_user_contrastive.txt"


class Explainer(Protocol):
    name: str
    negatives: bool
    """Whether the explainer is shown non-activating examples too."""

    def prompt_files(self) -> list[str]:
        """The prompt files whose text shapes its explanations."""
        ...

    def messages(self, shown: list, negatives: list, latent_max: float, config: ExplainConfig) -> list[dict]:
        """The chat messages for one latent: ``shown`` activating examples (and ``negatives``)."""
        ...


@dataclass(frozen=True)
class PromptExplainer:
    """An explainer made of prompt files: a system message, optional few-shot turns, and the user
    message listing the latent's marked examples (and, when ``negatives``, non-activating ones)."""

    name: str
    system: str
    few_shot: str | None = None
    negatives: bool = False

    def prompt_files(self) -> list[str]:
        return [self.system, USER, USER_CONTRASTIVE] + ([self.few_shot] if self.few_shot else [])

    def messages(self, shown: list, negatives: list, latent_max: float, config: ExplainConfig) -> list[dict]:
        rendered = "\n".join(
            render_example(e.tokens, e.activations, latent_max, i + 1, config.mark_threshold, config.show_activations)
            for i, e in enumerate(shown)
        )
        messages = [{"role": "system", "content": prompt_text(self.system).strip()}]
        if self.few_shot:
            messages += few_shot(self.few_shot)
        if self.negatives:
            listed = "\n".join(render_plain(e.tokens, i + 1) for i, e in enumerate(negatives))
            user = fill(USER_CONTRASTIVE, examples=rendered, negatives=listed)
        else:
            user = fill(USER, examples=rendered)
        messages.append({"role": "user", "content": user})
        return messages


EXPLAINERS: dict[str, Explainer] = {
    "default": PromptExplainer("default", "explain_system.txt", "explain_fewshot.txt"),
    "contrastive": PromptExplainer("contrastive", "explain_system_contrastive.txt", negatives=True),
    "cot": PromptExplainer("cot", "explain_system_cot.txt", "explain_fewshot_cot.txt"),
}
