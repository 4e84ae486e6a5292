"""The ``output_choice`` scorer: Gur-Arieh et al.'s output metric (spec C). The latent is steered to each
signed KL of a schedule (+0.25, +0.5, -0.25, -0.5 nats by default), each continuing three prompts, and
its 12 tagged lines form one set; two decoy sets are built the same way from other live latents of the
same dictionary; the judge, given the explanation, picks the set it describes. Headline ``accuracy`` of
one question per latent (chance 1/3), with a Wilson interval (n = 1).

Where we differ from the spec (besides the steering itself, see ``score.intervention.schedule``):
- their decoys come from a precomputed pickle of random features (drawn per cell, possibly of another
  SAE; a pitfall the spec names); ours are live latents (fired at least once in the collect, not planted)
  of the same dictionary, drawn with the seed from a fixed pool of ``DECOY_POOL`` latents, so that their
  steering is computed once per run and reused across latents as their pickle is; the decoys used are
  recorded in ``detail``;
- an answer with no integer on its last line is unscored with its reason, not an error.
"""

from __future__ import annotations

import dataclasses
import random

from ...text import prompt_text
from ..base import ScoreContext, ScoreOutcome, ask
from ..classifier import latent_rng
from ..controls import explained_latent
from ..intervals import wilson
from ..intervention import output_judge
from ..intervention.schedule import OUTPUT_PROMPTS, ScheduleStore
from ..metrics import multiple_choice
from .intervention import steering_store

#: Decoy sets per question (Gur-Arieh et al.: 2, so chance is 1/3).
DECOYS = 2
#: Live latents, drawn once per run with the seed, that decoys are taken from.
DECOY_POOL = 12
#: Fields of ScoreConfig that shape the judge's answers.
JUDGE_FIELDS = ("backend", "model", "max_tokens", "temperature", "seed")
PURPOSE = "output_choice"


def schedule_store(context: ScoreContext) -> ScheduleStore:
    """The run's one schedule store (sharing the intervention scorers' model and lock)."""
    return context.resource("output_schedule", lambda: ScheduleStore(context, steering_store(context)))


def decoy_pool(live: list[int], seed: int, size: int = DECOY_POOL) -> list[int]:
    """``size`` of the ``live`` latents, in a seeded random order (the same for every latent of a run)."""
    order = sorted(live)
    random.Random(f"output_choice decoys {seed}").shuffle(order)  # a str seed is stable across processes
    return order[:size]


class OutputChoiceScorer:
    name = "output_choice"
    needs = frozenset({"llm", "subject_model"})

    def __init__(self, context: ScoreContext):
        self.context, self.config = context, context.config
        self.store = schedule_store(context)
        self.model = context.llm_model
        self._pool: list[int] | None = None

    def identity(self) -> dict:
        return {
            "scorer": self.name,
            "steering": self.store.hash,
            "judge_model": self.model,
            **{k: getattr(self.config, k) for k in JUDGE_FIELDS},
            "decoys": DECOYS,
            "pool": DECOY_POOL,
            "prompts": [prompt_text(output_judge.OUTPUT_JUDGE), prompt_text(OUTPUT_PROMPTS)],
        }

    def chance(self) -> dict:
        return {"score": 1 / (DECOYS + 1), "accuracy": 1 / (DECOYS + 1)}

    def pool(self) -> list[int]:
        if self._pool is None:
            self._pool = decoy_pool(self.store.live_latents(), self.config.seed)
        return self._pool

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:
        own = await self.store.steered(latent)
        detail = {"calibration": own.calibration}
        if not own.reached:
            return ScoreOutcome("unscored", None, self.chance(), own.unreached_reason(), detail=detail)
        rng = latent_rng(self.config.seed, latent, "output_choice")
        # under the shuffled control the explanation is another latent's: that latent's steering would
        # match it, so it is never offered as a decoy (the question would have two right answers)
        lent = explained_latent(self.context.chosen[latent][0]) if self.config.control == "shuffled" else latent
        candidates = [lat for lat in self.pool() if lat not in (latent, lent)]
        rng.shuffle(candidates)
        decoys, tried = [], []
        for other in candidates:  # in the seeded order, the first that the schedule can reach
            if len(decoys) == DECOYS:
                break
            candidate = await self.store.steered(other)
            tried.append(other)
            if candidate.reached:
                decoys.append(candidate)
        detail["decoys_tried"] = tried
        if len(decoys) < DECOYS:
            reason = f"only {len(decoys)} of the {len(tried)} live latents tried as decoys reach the KL schedule"
            return ScoreOutcome("unscored", None, self.chance(), reason, detail=detail)
        n = DECOYS + 1
        correct = rng.randrange(n)
        offered = decoys[:correct] + [own] + decoys[correct:]
        item = f"latent {latent} output_choice"
        messages = output_judge.output_choice_messages(explanation, [output_judge.set_block(s.lines) for s in offered])
        # the judge reasons first and answers on its last line: no answer marker, no guided answer
        options = dataclasses.replace(self.context.options, prefill="", regex="")
        asked = await ask(self.context, messages, item, PURPOSE, options=options)
        chosen, reason = None, asked.reason
        if asked.answer is not None:
            chosen, reason = output_judge.parse_last_line_choice(asked.answer, n)
        metrics = multiple_choice([correct], [chosen], n)
        detail.update(sets=[s.latent for s in offered], correct=correct, chosen=chosen)
        hit = None if chosen is None else chosen == correct
        rows = [
            {
                "context_id": j,  # the completion_id of the true set's line in intervention_rows
                "variant": "steered",
                "label": True,
                "prediction": hit,
                "probability": None,
                "batch": 0,
                "item": item,
                "reason": reason if hit is None else None,
            }
            for j in range(len(own.lines))
        ]
        c = asked.completion
        return ScoreOutcome(
            "scored" if chosen is not None else "unscored",
            metrics["accuracy"],
            self.chance(),
            None if chosen is not None else f"no readable choice: {reason}",
            metrics={"accuracy": metrics["accuracy"]},
            n_examples=metrics["n"],
            n_unscored=metrics["n_unscored"],
            rows=rows,
            n_calls=1,
            tokens=(c.prompt_tokens, c.completion_tokens, 0) if c is not None else (0, 0, 0),
            detail=detail,
            interval=wilson(metrics["n_correct"], metrics["n"]),  # one question per latent: n = 1
        )
