"""The ``intervention_surprisal`` scorer: delphi's surprisal score, the mean over prompts of
log p(explanation | steered text) - log p(explanation | clean text) under a scorer LM, in nats (chance
0). Each pair is also read as a two-way choice (the text after which the explanation is likelier is
"steered", probability the logistic of the log-probability difference), giving ``accuracy``, balanced
accuracy and AUROC with chance 0.5.

delphi scores with a separate Llama-3.1-8B base model and a 4-shot frame; we use the subject model
itself (as PR #151) unless ``surprisal_model`` names a local folder, with the 0-shot frame
``prompts/intervention_surprisal.txt``, and we score the pipeline's explanation, not five explanations
from an intervention-based explainer."""

from __future__ import annotations

import math

from ...text import prompt_text
from ..base import ScoreContext, ScoreOutcome
from ..intervals import bootstrap_mean
from ..intervention.surprisal import SURPRISAL_TEMPLATE
from ..metrics import binary_metrics
from .intervention import steering_store, unreached


class InterventionSurprisalScorer:
    name = "intervention_surprisal"
    needs = frozenset({"subject_model"})

    def __init__(self, context: ScoreContext):
        self.store = steering_store(context)
        self.model = self.store.surprisal_model
        self.seed = context.config.seed  # seeds the bootstrap interval over prompts

    def identity(self) -> dict:
        return {
            "scorer": self.name,
            "steering": self.store.hash,
            "scorer_model": self.model,
            "template": prompt_text(SURPRISAL_TEMPLATE),
        }

    def chance(self) -> dict:
        return {"score": 0.0}

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:
        own = await self.store.steering(latent)
        if not own.reached:
            return unreached(own, self.chance())
        result = await self.store.surprisal(explanation, own)
        rows = []
        for i, (clean, steered) in enumerate(zip(result["logp_clean"], result["logp_steered"], strict=True)):
            for cid, label, mine, other in ((2 * i, False, clean, steered), (2 * i + 1, True, steered, clean)):
                probability = 1 / (1 + math.exp(other - mine))  # P(this is the steered text), a 2-way choice
                rows.append(
                    {
                        "context_id": cid,
                        "variant": "steered" if label else "clean",
                        "label": label,
                        "prediction": probability > 0.5,
                        "probability": probability,
                        "batch": 0,
                        "item": None,
                        "reason": None,
                    }
                )
        metrics = binary_metrics(
            [r["label"] for r in rows], [r["prediction"] for r in rows], [r["probability"] for r in rows]
        )
        detail = {
            "calibration": own.calibration,
            "unit": "nats",
            "sem": _finite(result["sem"]),
            "per_prompt": result["per_prompt"],
            "logp_clean": result["logp_clean"],
            "logp_steered": result["logp_steered"],
        }
        return ScoreOutcome(
            "scored",
            result["score"],
            {**metrics["chance"], "score": 0.0},
            metrics=metrics,
            n_examples=result["n_prompts"],
            rows=rows,
            detail=detail,
            n_positive=metrics["n_positive"],
            n_negative=metrics["n_negative"],
            interval=bootstrap_mean(result["per_prompt"], seed=[self.seed, latent]),
        )


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None
