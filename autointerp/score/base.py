"""What a scorer is: one object behind one protocol, given one context, returning one outcome.

A scorer declares its ``name``, what it ``needs`` (an LLM, the subject model, embeddings), the model
whose judgement its score is, its ``identity`` (the fields hashed into the score's configuration hash,
so a rerun skips finished scores) and its ``chance`` level, and scores one (latent, explanation, test
contexts) at a time. Scorers are listed in one table (``registry.py``); the stage stores every
``ScoreOutcome`` through one writer (``rows.score_writer``) and every scorer asks its LLM through
``ask``. A scorer whose only cost is LLM calls also offers a pure ``requests(latent, explanation,
contexts) -> list[Request]``, the requests its ``score`` sends, which ``autointerp plan`` counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import ScoreConfig
from ..llm.base import Completion, GenerateOptions
from ..llm.queue import RequestFailed
from ..runner import ResumingQueue
from .classifier import TestContext
from .intervals import Interval, binary_interval
from .metrics import binary_metrics

#: What a scorer may need, besides the explanation and the test contexts.
NEEDS = ("llm", "subject_model", "embeddings")


@dataclass
class ScoreOutcome:
    """What one scorer produced for one (latent, explanation): the score row's values and its
    per-context rows, ready to store. ``status`` is 'scored' or 'unscored' (then ``reason`` says why and
    ``score`` is not stored)."""

    status: str
    score: float | None
    chance: dict
    reason: str | None = None
    metrics: dict = field(default_factory=dict)  # balanced_accuracy, accuracy, precision, recall, f1, auroc
    n_examples: int = 0
    n_unscored: int = 0
    rows: list[dict] = field(default_factory=list)  # context_id, variant, marked, quantile, label, prediction,
    # probability, batch, item (the LLM call's item, or None), reason, simulated (see score_example_rows)
    n_calls: int = 0
    tokens: tuple[int, int, int] = (0, 0, 0)  # prompt, completion, fixed prompt
    detail: dict | None = None
    correlation: float | None = None
    quantile_recall: dict | None = None
    n_positive: int | None = None  # scored contexts labelled activating (None where labels do not apply)
    n_negative: int | None = None  # scored contexts labelled non-activating
    interval: Interval | None = None  # 95% interval of ``score`` (score/intervals.py); None where undefined
    companions: list = field(default_factory=list)
    """(scorer, config_hash, ScoreOutcome) of further score rows stored under the same latent and
    explanation: the cue probes of the samples a detection or fuzzing score showed."""


class Scorer(Protocol):
    """One scorer of explanations (see the module docstring)."""

    name: str
    needs: frozenset[str]
    model: str
    """The model whose judgement the score is (stored with it)."""

    def identity(self) -> dict:
        """Everything that shapes this scorer's scores (settings, model, prompt texts), hashed into the
        score's configuration hash."""
        ...

    def chance(self) -> dict:
        """The chance level stored with a score that could not be computed."""
        ...

    async def score(self, latent: int, explanation: str, contexts: list[TestContext]) -> ScoreOutcome:
        """Score ``explanation`` of ``latent`` on its test ``contexts``."""
        ...


@dataclass
class ScoreContext:
    """What the scorers of one run share: the configuration, the LLM queue and its options, the run's
    writer (for a scorer that stores more than scores, as intervention's continuations), the chosen
    explanations ({latent: (explanation_id, explanation)}) and resources built once on first use."""

    config: ScoreConfig
    con: Any
    queue: ResumingQueue
    options: GenerateOptions
    writer: Any
    run_id: str
    chosen: dict[int, tuple[str, str]]
    _resources: dict = field(default_factory=dict)
    _fixed: dict = field(default_factory=dict)

    @property
    def llm_model(self) -> str:
        return self.queue.backend.model

    def resource(self, key: str, make: Callable[[], Any]) -> Any:
        """The run's one ``key`` resource (an embedding model, the steering store), made on first use."""
        if key not in self._resources:
            self._resources[key] = make()
        return self._resources[key]

    def reports(self) -> dict:
        """What each resource with a ``report()`` method says about the run, by resource name."""
        return {key: r.report() for key, r in self._resources.items() if hasattr(r, "report")}

    def fixed_tokens(self, system: str) -> int:
        """Prompt tokens of a system message every call of a scorer repeats (a prefix cache serves
        them); 0 when the backend cannot count. Counted as the start of the prompt (without the
        generation prompt that follows a prompt's last message): only what every call holds byte for
        byte."""
        if system not in self._fixed:
            self._fixed[system] = self._prefix_tokens([{"role": "system", "content": system}])
        return self._fixed[system]

    def shared_tokens(self, system: str, header: str) -> int:
        """Prompt tokens of ``header``, the start of the user message that all calls of one latent share
        after the ``system`` message (its explanation), which a prefix cache serves in every call of that
        latent but the first; 0 when the backend cannot count. The user turn's own opening is left out,
        so this is a lower bound of the shared prefix, never more."""
        turns = [{"role": "system", "content": system}, {"role": "user", "content": header}]
        bare = [turns[0], {"role": "user", "content": ""}]
        return max(0, self._prefix_tokens(turns) - self._prefix_tokens(bare))

    def _prefix_tokens(self, messages: list[dict]) -> int:
        return self.queue.backend.count_tokens(messages, generation_prompt=False) or 0


@dataclass(frozen=True)
class Request:
    """One LLM request a scorer sends: the call log's item, the chat messages and the options (the
    answer regex already applied). Built by a pure ``requests`` method, which ``autointerp plan`` reads
    to count a run's tokens without calling the LLM."""

    item: str
    messages: list[dict]
    options: GenerateOptions


def guided_options(options: GenerateOptions, regex: str) -> GenerateOptions:
    """``options`` with ``regex`` guiding the answer, where they prefill a marker (else unchanged)."""
    return dataclasses.replace(options, regex=regex) if regex and options.prefill else options


@dataclass
class Asked:
    """One LLM answer: the text with its prefill, or why the request failed."""

    answer: str | None
    completion: Completion | None
    reason: str | None


async def ask(
    context: ScoreContext, messages: list[dict], item: str, purpose: str, *, regex: str = "", options=None
) -> Asked:
    """Send one prompt through the run's queue (throttling, retries, the call log). ``regex`` guides the
    answer after a prefilled marker (used only when the options prefill one); ``options`` replaces the
    run's options for this call."""
    options = guided_options(options or context.options, regex)
    try:
        completion = await context.queue.run(messages, options, item, purpose)
    except RequestFailed as exc:
        return Asked(None, None, f"request failed: {exc.reason}")
    return Asked(options.prefill + completion.text, completion, None)


def binary_outcome(rows: list[dict], headline_key: str, **extra) -> ScoreOutcome:
    """The outcome of a scorer whose rows are binary predictions of labels (detection, fuzzing,
    embedding): the metrics of the readable rows; unscored when no row could be read."""
    metrics = binary_metrics(
        [r["label"] for r in rows],
        [r["prediction"] for r in rows],
        [r["probability"] for r in rows],
        [r["quantile"] if r["label"] else None for r in rows],
    )
    chance = dict(metrics["chance"])
    chance["score"] = chance.get(headline_key)
    scored = metrics[headline_key] is not None or metrics["n"] > 0
    reasons = [r["reason"] for r in rows if r["reason"]]
    return ScoreOutcome(
        "scored" if scored else "unscored",
        metrics[headline_key] if scored else None,
        chance,
        None if scored else f"no batch answer could be read: {reasons[0] if reasons else ''}",
        metrics=metrics,
        n_examples=metrics["n"],
        n_unscored=metrics["n_unscored"],
        rows=rows,
        quantile_recall=metrics.get("recall_by_quantile", {}),
        n_positive=metrics["n_positive"],
        n_negative=metrics["n_negative"],
        interval=binary_interval(metrics, headline_key, [r["label"] for r in rows], [r["probability"] for r in rows])
        if scored
        else None,
        **extra,
    )
