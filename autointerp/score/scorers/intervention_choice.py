"""The ``intervention_choice`` scorer: the judge picks, among the steered continuations of this latent
and of ``choices - 1`` other explained latents (drawn with the seed; those steered on the way are stored
and later reused as their own), the set the explanation describes; headline ``accuracy`` of one
question per latent (chance 1 / number of sets). Gur-Arieh et al.'s decoys (spec C), built from live,
explained latents of the same dictionary at the same target KL, as the spec's pitfall recommends."""

from __future__ import annotations

from ...text import prompt_text
from ..base import ScoreOutcome, ask
from ..classifier import latent_rng
from ..controls import explained_latent
from ..intervals import wilson
from ..intervention import judge
from ..metrics import multiple_choice
from .intervention import PURPOSE, InterventionScorer, unreached


class InterventionChoiceScorer(InterventionScorer):
    """The judge's setup and identity are the ``intervention`` scorer's, plus the number of choices."""

    name = "intervention_choice"
    prompts = (judge.CHOICE_SYSTEM, judge.CHOICE_USER)

    def identity(self) -> dict:
        return {**super().identity(), "choices": self.config.choices}

    def chance(self) -> dict:
        return {"score": 1 / self.config.choices, "accuracy": 1 / self.config.choices}

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:
        own = await self.store.steering(latent)
        if not own.reached:
            return unreached(own, self.chance())
        rng = latent_rng(self.config.seed, latent, "intervention_choice")
        # under the shuffled control the explanation is another latent's: that latent's steering would
        # match it, so it is never offered as a decoy (the question would have two right answers)
        lent = explained_latent(self.context.chosen[latent][0]) if self.config.control == "shuffled" else latent
        others = [lat for lat in sorted(self.context.chosen) if lat not in (latent, lent)]
        rng.shuffle(others)
        decoys = []
        for other in others:  # in the seeded order, the first that steering can reach
            if len(decoys) == self.config.choices - 1:
                break
            candidate = await self.store.steering(other)
            if candidate.reached:
                decoys.append(candidate)
        detail = {"calibration": own.calibration}
        if not decoys:
            reason = "no other explained latent can be steered to the target KL to offer as a choice"
            return ScoreOutcome("unscored", None, self.chance(), reason, detail=detail)
        n = len(decoys) + 1
        correct = rng.randrange(n)
        offered = decoys[:correct] + [own] + decoys[correct:]
        item = f"latent {latent} intervention_choice"
        prompts = self.store.prompts
        sets = [[judge.shown_text(p, c) for p, c in zip(prompts, s.steered, strict=True)] for s in offered]
        asked = await ask(
            self.context, judge.choice_messages(explanation, sets), item, PURPOSE, regex=judge.choice_regex(n)
        )
        chosen, reason = None, asked.reason
        if asked.answer is not None:
            chosen, reason = judge.parse_choice(asked.answer, n)
        metrics = multiple_choice([correct], [chosen], n)
        detail.update(choices=[s.latent for s in offered], correct=correct, chosen=chosen)
        hit = None if chosen is None else chosen == correct
        rows = [
            {
                "context_id": 2 * i + 1,
                "variant": "steered",
                "label": True,
                "prediction": hit,
                "probability": None,
                "batch": 0,
                "item": item,
                "reason": reason if hit is None else None,
            }
            for i in range(len(prompts))
        ]
        c = asked.completion
        fixed = self.context.fixed_tokens(prompt_text(judge.CHOICE_SYSTEM).strip())
        return ScoreOutcome(
            "scored" if chosen is not None else "unscored",
            metrics["accuracy"],
            {"score": 1 / n, "accuracy": 1 / n},
            None if chosen is not None else f"no readable choice: {reason}",
            metrics={"accuracy": metrics["accuracy"]},
            n_examples=metrics["n"],
            n_unscored=metrics["n_unscored"],
            rows=rows,
            n_calls=1,
            tokens=(c.prompt_tokens, c.completion_tokens, fixed) if c is not None else (0, 0, 0),
            detail=detail,
            interval=wilson(metrics["n_correct"], metrics["n"]),  # one question per latent: n = 1
        )
