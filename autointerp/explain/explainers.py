"""The explainers, one object each behind one protocol, in one table (``EXPLAINERS``) that the explain
stage reads: the prompt files an explainer uses (hashed into the explanation's identity) and the chat
messages it builds from one latent's explain-set examples (a pure function).

Adding an explainer is one class (or one ``PromptExplainer`` with its own prompt files) and one line in
the table; its name must also be one of ``config.EXPLAINERS``, the names a user may pick.

The output-centric explainers (``OutputExplainer``: vocabproj, tokenchange, ensemble, after Gur-Arieh et
al., shared/specs/intervention-and-output-scores.md section C) are also shown the latent's ``OutputSide``;
an explainer declares which parts it needs (``lens``, ``token_change``) and the stage fetches only those.
Where we differ from the spec on purpose: VocabProj there shows the top 50 and bottom 50 lens tokens as
one list; we show the promoted and suppressed tokens as two lists of ``--output-tokens`` each, from what
collect stored (``--lens-k``, 20 per sign by default, the issue's k), so at most that many. TokenChange's
own differences are in ``models/token_change.py``. The answer convention is ours for every explainer (the
last "[EXPLANATION]:" line, parsed by ``parse.py``) rather than the reference's completion of "this
vector is related to", so one parser and the guided prefill serve all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..config import ExplainConfig
from ..text import few_shot, fill, prompt_text
from .output_side import OutputSide
from .render import render_example, render_plain, render_token_list

USER = "explain_user.txt"
USER_CONTRASTIVE = "explain_user_contrastive.txt"


class Explainer(Protocol):
    name: str
    negatives: bool
    """Whether the explainer is shown non-activating examples too."""
    lens: bool
    """Whether it is shown the logit-lens tokens of the latent's ``OutputSide``."""
    token_change: bool
    """Whether it is shown the token-change tokens of the latent's ``OutputSide``."""

    def prompt_files(self) -> list[str]:
        """The prompt files whose text shapes its explanations."""
        ...

    def messages(
        self, shown: list, negatives: list, latent_max: float, config: ExplainConfig, output: OutputSide | None = None
    ) -> list[dict]:
        """The chat messages for one latent: ``shown`` activating examples (and ``negatives``), and its
        ``output`` side when the explainer uses one."""
        ...


@dataclass(frozen=True)
class PromptExplainer:
    """An explainer made of prompt files: a system message, optional few-shot turns, and the user
    message listing the latent's marked examples (and, when ``negatives``, non-activating ones)."""

    name: str
    system: str
    few_shot: str | None = None
    negatives: bool = False
    lens: bool = False
    token_change: bool = False

    def prompt_files(self) -> list[str]:
        return [self.system, USER, USER_CONTRASTIVE] + ([self.few_shot] if self.few_shot else [])

    def messages(
        self,
        shown: list,
        negatives: list,
        latent_max: float,
        config: ExplainConfig,
        output: OutputSide | None = None,  # noqa: ARG002 - an input-side explainer ignores it
    ) -> list[dict]:
        rendered = render_examples(shown, latent_max, config)
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


def render_examples(shown: list, latent_max: float, config: ExplainConfig) -> str:
    """The marked activating examples, one excerpt per line (with its strengths line)."""
    return "\n".join(
        render_example(e.tokens, e.activations, latent_max, i + 1, config.mark_threshold, config.show_activations)
        for i, e in enumerate(shown)
    )


@dataclass(frozen=True)
class OutputExplainer:
    """An output-centric explainer: a system message, few-shot turns, and a user message (``user``, a
    template with $promoted, $suppressed, $raised, $lowered and, when ``examples``, $examples) showing
    the parts of the latent's ``OutputSide`` it declares (``lens``, ``token_change``)."""

    name: str
    system: str
    few_shot: str
    user: str
    lens: bool = False
    token_change: bool = False
    examples: bool = False
    negatives: bool = False

    def prompt_files(self) -> list[str]:
        return [self.system, self.few_shot, self.user]

    def messages(
        self, shown: list, negatives: list, latent_max: float, config: ExplainConfig, output: OutputSide | None = None
    ) -> list[dict]:
        del negatives  # never shown
        output = output or OutputSide()
        user = fill(
            self.user,
            examples=render_examples(shown, latent_max, config) if self.examples else "",
            promoted=render_token_list(output.promoted),
            suppressed=render_token_list(output.suppressed),
            raised=render_token_list(output.raised),
            lowered=render_token_list(output.lowered),
        )
        return [
            {"role": "system", "content": prompt_text(self.system).strip()},
            *few_shot(self.few_shot),
            {"role": "user", "content": user},
        ]


EXPLAINERS: dict[str, Explainer] = {
    "default": PromptExplainer("default", "explain_system.txt", "explain_fewshot.txt"),
    "contrastive": PromptExplainer("contrastive", "explain_system_contrastive.txt", negatives=True),
    "cot": PromptExplainer("cot", "explain_system_cot.txt", "explain_fewshot_cot.txt"),
    "vocabproj": OutputExplainer(
        "vocabproj",
        "explain_system_vocabproj.txt",
        "explain_fewshot_vocabproj.txt",
        "explain_user_vocabproj.txt",
        lens=True,
    ),
    "tokenchange": OutputExplainer(
        "tokenchange",
        "explain_system_tokenchange.txt",
        "explain_fewshot_tokenchange.txt",
        "explain_user_tokenchange.txt",
        token_change=True,
    ),
    "ensemble": OutputExplainer(
        "ensemble",
        "explain_system_ensemble.txt",
        "explain_fewshot_ensemble.txt",
        "explain_user_ensemble.txt",
        lens=True,
        token_change=True,
        examples=True,
    ),
}
