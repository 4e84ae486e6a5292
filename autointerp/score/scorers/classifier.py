"""Detection and fuzzing: the explanation as a binary classifier run by an LLM over batches of test
excerpts, one 0/1 answer per excerpt; balanced accuracy is the headline (see ``score.classifier``)."""

from __future__ import annotations

import asyncio

from ...config import ScoreConfig
from ...text import prompt_text
from .. import classifier
from ..answers import digit_probabilities, parse_digits
from ..base import Request, ScoreContext, ScoreOutcome, ask, binary_outcome, guided_options
from . import cues


class ClassifierScorer:
    """Shared by detection and fuzzing, which differ only in the samples they show."""

    name = ""
    needs = frozenset({"llm"})
    cue_probes = True  # store the cue probes of the samples shown (score/cues.py)

    def __init__(self, context: ScoreContext):
        self.context = context
        self.config = context.config
        self.model = context.llm_model

    def identity(self) -> dict:
        shaping = {k: getattr(self.config, k) for k in ScoreConfig.SHAPING}
        prompts = [prompt_text(classifier.SYSTEM[self.name]), prompt_text("score_user.txt")]
        samples = classifier.SAMPLES_VERSION
        return {**shaping, "model": self.model, "scorer": self.name, "prompts": prompts, "samples": samples}

    def chance(self) -> dict:
        return {"score": 0.5, "balanced_accuracy": 0.5}

    def samples(self, contexts, rng) -> list[classifier.Sample]:
        raise NotImplementedError

    def prepare(self, latent: int, explanation: str, contexts) -> tuple[list, list[list], list[Request]]:
        """The samples, their batches and one request per batch (pure: no LLM is called)."""
        rng = classifier.latent_rng(self.config.seed, latent, self.name)
        samples = self.samples(contexts, rng)
        groups = classifier.batches(samples, self.config.batch_size, rng)
        requests = [
            Request(
                f"latent {latent} {self.name} batch {i}",
                classifier.build_messages(self.name, explanation, batch),
                # guided: the answer is exactly n space-separated digits
                guided_options(self.context.options, f"( [01]){{{len(batch)}}}"),
            )
            for i, batch in enumerate(groups)
        ]
        return samples, groups, requests

    def requests(self, latent: int, explanation: str, contexts) -> list[Request]:
        """The LLM requests scoring ``explanation`` sends (what ``autointerp plan`` counts)."""
        return self.prepare(latent, explanation, contexts)[2]

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:
        samples, groups, requests = self.prepare(latent, explanation, contexts)
        results = await asyncio.gather(*[self._batch(r, len(b)) for r, b in zip(requests, groups, strict=True)])
        first, rest = self.cached_tokens(explanation)
        rows, tokens, answered = [], [0, 0, 0], 0
        for b, (batch, (item, preds, probs, reason, completion)) in enumerate(zip(groups, results, strict=True)):
            rows += [
                dict(
                    context_id=s.context_id,
                    variant=s.variant,
                    marked=s.marked,
                    quantile=s.quantile,
                    label=s.label,
                    prediction=p,
                    probability=pr,
                    batch=b,
                    item=item,
                    reason=reason,
                )
                for s, p, pr in zip(batch, preds, probs, strict=True)
            ]
            if completion is not None:
                tokens = [
                    tokens[0] + completion.prompt_tokens,
                    tokens[1] + completion.completion_tokens,
                    tokens[2] + (rest if answered else first),
                ]
                answered += 1
        outcome = binary_outcome(rows, "balanced_accuracy", n_calls=len(groups), tokens=tuple(tokens))
        outcome.companions = cues.companions(self.name, samples, self.config) if self.cue_probes else []
        return outcome

    def cached_tokens(self, explanation: str) -> tuple[int, int]:
        """Prompt tokens a prefix cache serves in the first answered call of one latent (the system
        message, the same for every latent) and in each of its other calls (the system message and the
        explanation's header): stored as the scores' ``fixed_prompt_tokens``."""
        system = classifier.system_text(self.name)
        fixed = self.context.fixed_tokens(system)
        return fixed, fixed + self.context.shared_tokens(system, classifier.explanation_header(explanation))

    async def _batch(self, request: Request, n: int):
        """One prompt of ``n`` excerpts: (item, predictions, probabilities, reason, completion); unreadable ->
        None predictions."""
        item = request.item
        asked = await ask(self.context, request.messages, item, self.name, options=request.options)
        if asked.answer is None:
            return item, [None] * n, [None] * n, asked.reason, None
        predictions, reason = parse_digits(asked.answer, n)
        if predictions is None:
            return item, [None] * n, [None] * n, reason, asked.completion
        prefill = self.context.options.prefill
        probabilities = digit_probabilities(asked.answer, asked.completion.logprobs, n, prefill) or [None] * n
        return item, predictions, probabilities, None, asked.completion


class DetectionScorer(ClassifierScorer):
    """Plain excerpts, activating or not: does the explanation tell them apart?"""

    name = "detection"

    def samples(self, contexts, rng):
        return classifier.detection_samples(contexts)


class FuzzingScorer(ClassifierScorer):
    """Marked excerpts, correctly or falsely: does the explanation fit the marked tokens?"""

    name = "fuzzing"

    def samples(self, contexts, rng):
        c = self.config
        return classifier.fuzzing_samples(contexts, c.mark_threshold, c.fuzz_random, c.fuzz_misplaced, rng)


class DetectionHardScorer(ClassifierScorer):
    """Detection of the activating test contexts against the latent's hard negatives (kind 'hard'):
    non-activating windows that look like them, so a vague explanation loses more here than in
    ``detection``. Chance 0.5 (balanced accuracy). A latent without hard negatives in its test set is
    unscored, with the reason."""

    name = "detection_hard"
    reads_hard = True
    cue_probes = False  # the cue probes belong to detection's samples

    def samples(self, contexts, rng):
        return classifier.hard_detection_samples(contexts)

    def requests(self, latent: int, explanation: str, contexts) -> list[Request]:
        return super().requests(latent, explanation, contexts) if _has_hard(contexts) else []

    async def score(self, latent: int, explanation: str, contexts) -> ScoreOutcome:
        if not _has_hard(contexts):
            return ScoreOutcome(
                "unscored",
                None,
                self.chance(),
                "no hard negatives in the latent's test set (collect with --hard-negatives N)",
            )
        return await super().score(latent, explanation, contexts)


def _has_hard(contexts) -> bool:
    return any(c.kind == classifier.HARD for c in contexts)
