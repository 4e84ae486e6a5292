"""The ``input_score`` and ``output_score`` scorers: Arad et al.'s input score and output score (section
A of shared/specs/intervention-and-output-scores.md), computed with the subject model and no LLM.

- ``input_score``: the fraction of the latent's first N top-activating records (N = min(--input-examples,
  available)) whose peak token is one of its representative tokens R_i (the top 20 of the logit lens of
  its decoder row). Records: all of the latent's activating examples of the current collect, of the
  explain and the test split (never the validate split, held out from every scorer; kinds ``top`` and
  ``quantile``, positive side), strongest first by ``max_activation``, as the spec's top records; not
  the test set the stage hands scorers, which is a held-out sample spread over quantiles and would
  mostly show weak activations. Interval: Wilson over the N records.
- ``output_score``: rank_term x prob_term of R_i after one forward pass on the neutral prompt with the
  latent amplified at the last position (``input_output.sides``). One deterministic number: no interval.

Neither reads the explanation: each latent is computed once per run and the same score is stored for
every explanation scored (the stage keys scores by explanation). The explanation controls (shuffled,
empty) would store the same numbers as fake controls, so config validation refuses them. The chance
level (``chance.score``) is the same score of a random direction as long as the decoder row, with its
own representative tokens (for the input score: the same peak tokens against the random direction's
R); ``detail`` holds the spec's analytic reference.
"""

from __future__ import annotations

from ..base import ScoreContext, ScoreOutcome
from ..input_output.metrics import input_hits, peak_token_ids
from ..input_output.sides import PROMPT, REPRESENTATIVE_TOKENS
from ..input_output.store import OutputSideStore
from ..intervals import wilson

#: Where the input score's records come from (hashed into its identity).
RECORDS = "activating examples of both splits (top, quantile; max_activation > 0), strongest first"
BASELINE = "the same score of a random direction as long as the decoder row (chance.score)"


def output_side_store(context: ScoreContext) -> OutputSideStore:
    """The run's one output-side store, shared by the two scorers."""
    return context.resource("output_side", lambda: OutputSideStore(context))


def top_records(con, latent: int, run_id: str, limit: int) -> list[tuple[int, list[int], list[float]]]:
    """(context_id, token_ids, activations) of the latent's first ``limit`` activating examples of the
    collect ``run_id``, strongest first, each context once."""
    rows = con.execute(
        "SELECT context_id, token_ids, activations FROM examples WHERE latent = ? AND run_id = ? "
        "AND split IN ('explain', 'test') "  # never the validate split, held out from every scorer
        "AND kind IN ('top', 'quantile') AND max_activation > 0 ORDER BY max_activation DESC, context_id",
        [latent, run_id],
    ).fetchall()
    seen, records = set(), []
    for cid, ids, acts in rows:
        if cid not in seen and ids:
            seen.add(cid)
            records.append((cid, ids, acts))
    return records[:limit]


class _OutputSideScorer:
    needs = frozenset({"subject_model"})

    def __init__(self, context: ScoreContext):
        self.context, self.config = context, context.config
        self.store = output_side_store(context)
        self.model = self.store.source.model_name

    def chance(self) -> dict:
        return {"score": None, "baseline": BASELINE}

    def _refused(self, reason: str) -> ScoreOutcome:
        return ScoreOutcome("unscored", None, self.chance(), reason, detail={"output_side": self.store.hash})


class InputScorer(_OutputSideScorer):
    name = "input_score"

    def identity(self) -> dict:
        return {
            "scorer": self.name,
            "representative_tokens": self.store.lens_hash,
            "examples": self.config.input_examples,
            "min_examples": self.config.input_min_examples,
            "records": RECORDS,
        }

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:  # noqa: ARG002 - explanation-blind
        side = await self.store.side(latent)
        if side.reason:
            return self._refused(side.reason)
        records = top_records(self.context.con, latent, self.store.source.run_id, self.config.input_examples)
        if len(records) < self.config.input_min_examples:
            return self._refused(
                f"{len(records)} activating examples, fewer than --input-min-examples "
                f"{self.config.input_min_examples} (Arad et al. skip such latents)",
            )
        peaks = peak_token_ids([(ids, acts) for _, ids, acts in records])
        n, hits = len(peaks), input_hits(peaks, side.representative)
        random_hits = input_hits(peaks, side.random_representative)
        return ScoreOutcome(
            "scored",
            hits / n,
            {"score": random_hits / n, "baseline": BASELINE},
            n_examples=n,
            interval=wilson(hits, n),
            detail={
                "hits": hits,
                "representative_tokens": side.representative_tokens,
                "representative_ids": side.representative,
                "random_direction_hits": random_hits,
                "analytic_chance": REPRESENTATIVE_TOKENS / side.vocabulary,
                "output_side": self.store.hash,
            },
        )


class OutputScorer(_OutputSideScorer):
    name = "output_score"

    def identity(self) -> dict:
        return {"scorer": self.name, "output_side": self.store.hash}

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:  # noqa: ARG002 - explanation-blind
        side = await self.store.side(latent)
        reason = side.reason or side.output_reason
        if reason:
            return self._refused(reason)
        return ScoreOutcome(
            "scored",
            side.output["score"],
            {"score": side.random_output["score"], "baseline": BASELINE},
            n_examples=1,
            detail={
                **{k: v for k, v in side.output.items() if k != "score"},
                "random_direction": side.random_output,
                "representative_tokens": side.representative_tokens,
                "representative_ids": side.representative,
                "prompt": PROMPT,
                "alpha": self.config.output_alpha,
                "m": side.strength,
                "reference": "unaffected representative tokens: rank_term about 0.95, prob_term about 1e-6 to 1e-4",
                "output_side": self.store.hash,
            },
        )
