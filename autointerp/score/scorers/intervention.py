"""The ``intervention`` scorer: steer the latent (``score.intervention.store``), then an LLM judge, given
the explanation, labels each text (a neutral prompt and its continuation, about half steered) as steered
or not; label = steered, prediction = the judge's answer; headline ``balanced_accuracy`` (chance 0.5).

Where we differ from the spec (shared/specs/intervention-and-output-scores.md):
- delphi (B) continues 30 corpus prompts cut right after the latent's first activation and edits the
  latent at the last prompt token; we continue neutral prompts shared by every latent and add the
  decoder direction at every position (``models.steering``), so the clean text carries nothing of
  the latent's input side, the steered text carries the effect throughout, and the multiple-choice sets
  are continuations of the same prompts;
- Gur-Arieh et al. (C) clamp the latent in the SAE-spliced model over a KL schedule (±0.25, ±0.5) and
  ask a 3-way question against two decoy sets from random features; we use one calibrated target KL,
  the same additive steering, a per-text judge question (this scorer), and ``choices`` sets whose decoys
  are other explained latents of the same dictionary at the same target KL (``intervention_choice``).

Steering goes the direction's own way, also for signed latents (MLP neurons, AbsTopK), whose other side
is not scored.
"""

from __future__ import annotations

import asyncio

from ...text import prompt_text
from ..answers import digit_probabilities, parse_digits
from ..base import ScoreContext, ScoreOutcome, ask
from ..classifier import latent_rng
from ..intervals import binary_interval
from ..intervention import judge
from ..intervention.store import SteeringStore
from ..metrics import binary_metrics

#: Fields of ScoreConfig that shape a judge's answers.
JUDGE_FIELDS = ("backend", "model", "max_tokens", "temperature", "guided", "logprobs", "batch_size", "seed")
PURPOSE = "intervention"


def steering_store(context: ScoreContext) -> SteeringStore:
    """The run's one steering store, shared by the intervention scorers."""
    return context.resource("steering", lambda: SteeringStore(context))


def unreached(own, chance: dict) -> ScoreOutcome:
    """The outcome of any intervention scorer for a latent steering cannot bring to the target KL."""
    return ScoreOutcome("unscored", None, chance, own.unreached_reason(), detail={"calibration": own.calibration})


class InterventionScorer:
    name = "intervention"
    needs = frozenset({"llm", "subject_model"})
    prompts = (judge.JUDGE_SYSTEM, judge.JUDGE_USER)

    def __init__(self, context: ScoreContext):
        self.context, self.config = context, context.config
        self.store = steering_store(context)
        self.model = context.llm_model

    def identity(self) -> dict:
        return {
            "scorer": self.name,
            "steering": self.store.hash,
            "judge_model": self.model,
            **{k: getattr(self.config, k) for k in JUDGE_FIELDS},
            "prompts": [prompt_text(name) for name in self.prompts],
        }

    def chance(self) -> dict:
        return {"score": 0.5, "balanced_accuracy": 0.5}

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:
        own = await self.store.steering(latent)
        if not own.reached:
            return unreached(own, self.chance())
        texts = []
        for i, prompt in enumerate(self.store.prompts):
            texts.append((2 * i, False, judge.shown_text(prompt, own.clean[i])))
            texts.append((2 * i + 1, True, judge.shown_text(prompt, own.steered[i])))
        latent_rng(self.config.seed, latent, "intervention").shuffle(texts)
        size = self.config.batch_size
        groups = [texts[k : k + size] for k in range(0, len(texts), size)]
        answered = await asyncio.gather(*[self._batch(latent, explanation, b, g) for b, g in enumerate(groups)])
        rows = [r for part, _ in answered for r in part]
        completions = [c for _, c in answered if c is not None]
        metrics = binary_metrics(
            [r["label"] for r in rows], [r["prediction"] for r in rows], [r["probability"] for r in rows]
        )
        fixed = self.context.fixed_tokens(prompt_text(judge.JUDGE_SYSTEM).strip())
        score, status, reason = metrics["balanced_accuracy"], "scored", None
        if score is None:
            why = next((r["reason"] for r in rows if r["reason"]), "the readable answers cover one class only")
            status, reason = "unscored", f"no balanced accuracy: {why}"
        return ScoreOutcome(
            status,
            score,
            {**metrics["chance"], "score": 0.5},
            reason,
            metrics=metrics,
            n_examples=metrics["n"],
            n_unscored=metrics["n_unscored"],
            rows=rows,
            n_calls=len(groups),
            tokens=(
                sum(c.prompt_tokens for c in completions),
                sum(c.completion_tokens for c in completions),
                len(completions) * fixed,
            ),
            detail={"calibration": own.calibration, "texts": len(rows), "batches": len(groups)},
            n_positive=metrics["n_positive"],
            n_negative=metrics["n_negative"],
            interval=binary_interval(metrics, "balanced_accuracy"),
        )

    async def _batch(self, latent: int, explanation: str, b: int, group: list) -> tuple[list[dict], object]:
        item = f"latent {latent} intervention batch {b}"
        n = len(group)
        messages = judge.judge_messages(explanation, [text for _, _, text in group])
        asked = await ask(self.context, messages, item, PURPOSE, regex=f"( [01]){{{n}}}")
        predictions = probabilities = [None] * n
        reason = asked.reason
        if asked.answer is not None:
            parsed, reason = parse_digits(asked.answer, n)
            if parsed is not None:
                predictions = parsed
                prefill = self.context.options.prefill
                probabilities = digit_probabilities(asked.answer, asked.completion.logprobs, n, prefill) or [None] * n
        rows = [
            {
                "context_id": cid,
                "variant": "steered" if label else "clean",
                "label": label,
                "prediction": p,
                "probability": q,
                "batch": b,
                "item": item,
                "reason": None if p is not None else reason,
            }
            for (cid, label, _), p, q in zip(group, predictions, probabilities, strict=True)
        ]
        return rows, asked.completion
