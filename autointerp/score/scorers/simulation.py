"""The simulation scorer: the LLM predicts every token's activation from the explanation; Pearson r
pooled over all tokens of a few test contexts (``score.simulation``)."""

from __future__ import annotations

import asyncio
import dataclasses

from ...config import ScoreConfig
from ...text import prompt_text
from .. import classifier, simulation
from ..base import Request, ScoreContext, ScoreOutcome, ask
from ..intervals import fisher_z
from ..metrics import pearson


class SimulationScorer:
    name = "simulation"
    needs = frozenset({"llm"})

    def __init__(self, context: ScoreContext):
        self.context = context
        self.config = context.config
        self.model = context.llm_model

    def identity(self) -> dict:
        c = self.config
        shaping = {k: getattr(c, k) for k in ScoreConfig.SHAPING + ScoreConfig.SIMULATION}
        prompts = [prompt_text(simulation.SYSTEM), prompt_text(simulation.USER)]
        return {**shaping, "model": self.model, "scorer": self.name, "prompts": prompts}

    def chance(self) -> dict:
        return {"correlation": 0.0, "score": 0.0}

    def prepare(self, latent: int, explanation: str, contexts) -> tuple[list[list], list[Request]]:
        """The batches of chosen test contexts and one request per batch (pure: no LLM is called)."""
        config, options = self.config, self.context.options
        rng = classifier.latent_rng(config.seed, latent, self.name)
        chosen = simulation.choose_contexts(contexts, config.simulation_contexts, rng)
        size = config.simulation_batch
        groups = [chosen[i : i + size] for i in range(0, len(chosen), size)]
        requests = []
        for b, batch in enumerate(groups):
            if options.prefill:  # guided: one line of exactly len(tokens) values per excerpt
                opts = dataclasses.replace(
                    options,
                    regex=simulation.answer_regex(batch),
                    max_tokens=max(options.max_tokens, 4 + sum(2 * len(c.tokens) + 4 for c in batch)),
                )
            else:
                opts = dataclasses.replace(
                    options, max_tokens=max(options.max_tokens, sum(3 * len(c.tokens) + 4 for c in batch))
                )
            item = f"latent {latent} simulation batch {b}"
            requests.append(Request(item, simulation.build_messages(explanation, batch), opts))
        return groups, requests

    def requests(self, latent: int, explanation: str, contexts) -> list[Request]:
        """The LLM requests scoring ``explanation`` sends (what ``autointerp plan`` counts)."""
        return self.prepare(latent, explanation, contexts)[1]

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:
        groups, requests = self.prepare(latent, explanation, contexts)
        fixed = self.context.fixed_tokens(simulation.fixed_text())

        async def one(batch, request: Request):
            item, opts = request.item, request.options
            asked = await ask(self.context, request.messages, item, self.name, options=opts)
            if asked.answer is None:
                return item, [simulation.Simulated(None, asked.reason)] * len(batch), None
            lengths = [len(c.tokens) for c in batch]
            return (
                item,
                simulation.parse(asked.answer, lengths, asked.completion.logprobs, opts.prefill),
                asked.completion,
            )

        results = await asyncio.gather(*[one(batch, r) for batch, r in zip(groups, requests, strict=True)])
        rows, tokens, true, predicted = [], [0, 0, 0], [], []
        from_logprobs = from_answer = 0
        for b, (batch, (item, sims, completion)) in enumerate(zip(groups, results, strict=True)):
            for c, sim in zip(batch, sims, strict=True):
                if sim.values is not None:
                    true += simulation.true_values(c)
                    predicted += sim.values
                    if sim.from_logprobs:
                        from_logprobs += len(sim.values)
                    else:
                        from_answer += len(sim.values)
                rows.append(
                    dict(
                        context_id=c.context_id,
                        variant="plain",
                        marked=None,
                        quantile=c.quantile,
                        label=c.kind not in classifier.NEGATIVE_KINDS,
                        prediction=None if sim.values is None else max(sim.values) >= 0.5,
                        probability=None,
                        batch=b,
                        item=item,
                        reason=sim.reason,
                        simulated=sim.values,
                    )
                )
            if completion is not None:
                tokens = [
                    tokens[0] + completion.prompt_tokens,
                    tokens[1] + completion.completion_tokens,
                    tokens[2] + fixed,
                ]
        r = pearson(true, predicted) if predicted else None
        n_scored = sum(1 for row in rows if row["simulated"] is not None)
        reasons = [row["reason"] for row in rows if row["reason"]]
        if not predicted:
            reason = f"no excerpt's simulation could be read: {reasons[0] if reasons else ''}"
        elif r is None:
            reason = "the simulation (or the true activations) is constant over every token: correlation undefined"
        else:
            reason = None
        detail = {
            "tokens_from_logprobs": from_logprobs,
            "tokens_from_answer": from_answer,
            "tokens": len(true),
            "excerpts": len(rows),
        }
        return ScoreOutcome(
            "scored" if r is not None else "unscored",
            r,
            self.chance(),
            reason,
            n_examples=n_scored,
            n_unscored=len(rows) - n_scored,
            rows=rows,
            n_calls=len(groups),
            tokens=tuple(tokens),
            detail=detail,
            correlation=r,
            quantile_recall={},
            # Fisher z over excerpts, not tokens: tokens of one excerpt are not independent, and the
            # excerpts are a lower bound on the effective sample size (a conservative interval).
            n_positive=sum(1 for row in rows if row["simulated"] is not None and row["label"]),
            n_negative=sum(1 for row in rows if row["simulated"] is not None and not row["label"]),
            interval=fisher_z(r, n_scored),
        )
