"""Best-of-k and refinement: choose a latent's explanation by its score on the validate split.

``--candidates K`` sends the explainer's one prompt K times as **K sampled requests**, candidate i with
seed i (temperature ``--temperature``, or 1.0 when that is 0, as greedy decoding would give K copies of one
answer). We chose K samples over one request asking for K explanations at once: the prompt is identical,
so a prefix cache (vLLM, most APIs) serves it after the first and K samples cost little more than K short
answers; the samples are independent, where a K-at-once answer is one correlated draw whose later items
drift toward variations of the first; and each candidate keeps the one-answer format the parser already
reads. The seed makes each candidate its own request in the call log (its request hash), so a rerun
reuses every answered candidate instead of answering K requests from one cached answer.

Every candidate is scored on the latent's validate split (``explain.validation``) and the best is kept
(the first on ties; an unscored candidate never beats a scored one). ``--refine R`` then asks up to R
times for a revision of the current best, shown its validation false positives and negatives
(``explain.refine``); a revision is kept only when it scores strictly better. Every candidate and every
round is stored in ``explanation_candidates``; the chosen one becomes the latent's ``explanation_rows``
row, so scoring, the summary and the exports read it as any other explanation. Its reported score comes
from ``autointerp score`` on the test split, which selection never reads.

Resume: every request (candidates, validation batches, revisions) is deterministic given the answers
before it, and every answered request is in the call log; a latent whose run was killed is run again
from the start, and every finished request is answered from the log (``runner.ResumingQueue``), so no
finished candidate, validation scoring or round is paid for twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from ..config import ExplainConfig
from ..llm.base import GenerateOptions
from ..llm.queue import RequestFailed
from .parse import parse_explanation
from .refine import refine_messages
from .validation import MEASURE, Validation, Validator

#: Sampling temperature of the candidates when --temperature is 0 (greedy would repeat one answer).
CANDIDATE_TEMPERATURE = 1.0

CANDIDATE_COLUMNS = [
    "latent",
    "config_hash",
    "round",
    "candidate",
    "run_id",
    "status",
    "explanation",
    "reason",
    "validation_score",
    "validation_n",
    "kept",
    "chosen",
    "call_id",
]


@dataclass
class Candidate:
    """One generated explanation (an initial candidate or a revision) and its validation."""

    round: int
    index: int
    item: str  # the call log's item of its request
    status: str  # 'explained', 'unparsed' or 'failed'
    explanation: str | None = None
    reason: str | None = None
    answer: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    validation: Validation | None = None
    kept: bool = False

    @property
    def score(self) -> float | None:
        return None if self.validation is None else self.validation.score


def candidate_options(options: GenerateOptions, config: ExplainConfig, index: int) -> GenerateOptions:
    """The options of candidate ``index``: the explain options, sampled and seeded when K > 1."""
    if config.candidates == 1:
        return options
    temperature = config.temperature or CANDIDATE_TEMPERATURE
    return dataclasses.replace(options, temperature=temperature, seed=index)


def better(new: Candidate, best: Candidate | None) -> bool:
    """Whether ``new`` beats ``best``: strictly higher validation score; a scored candidate beats an
    unscored one; an explanation beats none."""
    if new.explanation is None:
        return False
    if best is None or best.explanation is None:
        return True
    if new.score is None:
        return False
    return best.score is None or new.score > best.score


class Selection:
    """Chooses the explanation of each latent of one run (see the module docstring)."""

    def __init__(self, config: ExplainConfig, queue, writer, validator: Validator, identity: str, run_id: str):
        self.config, self.queue, self.writer, self.validator = config, queue, writer, validator
        self.identity, self.run_id = identity, run_id

    async def choose(self, latent: int, messages: list[dict], options: GenerateOptions, contexts) -> dict:
        """Generate, validate and refine ``latent``'s explanations from the explainer's ``messages``
        over its validate ``contexts``; store every candidate; return the explanation row's values
        (``call_id`` and ``n_calls`` filled by the writer)."""
        initial = await asyncio.gather(
            *[
                self._generate(
                    messages, candidate_options(options, self.config, i), f"latent {latent} candidate {i}", 0, i
                )
                for i in range(self.config.candidates)
            ]
        )
        requests = len(initial)

        async def validate(one: Candidate) -> None:
            if one.explanation is not None:
                one.validation = await self.validator.validate(latent, one.explanation, contexts, f"r0 c{one.index}")

        await asyncio.gather(*[validate(one) for one in initial])
        initial = list(initial)
        best = None
        for one in initial:  # in candidate order: the first of equal scores wins
            if better(one, best):
                best = one
        if best is not None:
            best.kept = True
        self._store(latent, initial, 0)
        rejected: list[tuple[str, float | None]] = []
        for round_ in range(1, self.config.refine + 1):
            if best is None or best.explanation is None or best.score is None:
                break  # nothing to revise, or no measure of what it got wrong
            wrong = best.validation
            if not wrong.false_positives and not wrong.false_negatives:
                break  # nothing left to correct on the validate split
            revise = refine_messages(
                messages,
                best.answer,
                best.explanation,
                MEASURE[self.config.select_by],
                best.score,
                wrong.false_positives,
                wrong.false_negatives,
                rejected,
            )
            item = f"latent {latent} refine {round_}"
            revision = await self._generate(revise, options, item, round_, 0, purpose="refine")
            requests += 1
            if revision.explanation is not None:
                revision.validation = await self.validator.validate(
                    latent, revision.explanation, contexts, f"r{round_} c0"
                )
            if better(revision, best) and revision.score is not None:
                revision.kept = True
                best = revision
            elif revision.explanation is not None:
                rejected.append((revision.explanation, revision.score))
            initial.append(revision)
            self._store(latent, [revision], round_)
        chosen = best if best is not None else initial[0]
        self._store_chosen(latent, initial, chosen)
        selection = "refined" if chosen.round > 0 else "best_of_k"
        return dict(
            status=chosen.status,
            explanation=chosen.explanation,
            reason=chosen.reason,
            answer=chosen.answer,
            prompt_tokens=sum(c.prompt_tokens for c in initial),
            completion_tokens=sum(c.completion_tokens for c in initial),
            selection=selection,
            chosen_item=chosen.item,
            n_calls=requests,
        )

    async def _generate(self, messages, options, item: str, round_: int, index: int, purpose="explain") -> Candidate:
        try:
            completion = await self.queue.run(messages, options, item, purpose)
        except RequestFailed as exc:
            return Candidate(round_, index, item, "failed", reason=exc.reason)
        answer = options.prefill + completion.text
        explanation, reason = parse_explanation(answer)
        return Candidate(
            round_,
            index,
            item,
            "explained" if explanation else "unparsed",
            explanation,
            reason,
            answer,
            completion.prompt_tokens,
            completion.completion_tokens,
        )

    def _rows(self, latent: int, candidates: list[Candidate], chosen: Candidate | None, call_id_of) -> list[list]:
        rows = []
        for c in candidates:
            v = c.validation
            reason = c.reason if v is None or v.score is not None else v.reason
            rows.append(
                [
                    latent,
                    self.identity,
                    c.round,
                    c.index,
                    self.run_id,
                    c.status,
                    c.explanation,
                    reason,
                    None if v is None else v.score,
                    None if v is None else v.n,
                    c.kept,
                    c is chosen,
                    None if c.status == "failed" else call_id_of(c.item),
                ]
            )
        return rows

    def _store(self, latent: int, candidates: list[Candidate], round_: int) -> None:
        """Store one finished round (none of it chosen yet): a run killed later keeps it."""

        def write(results, call_id_of):
            results.replace(
                "explanation_candidates",
                ["latent", "config_hash", "round"],
                CANDIDATE_COLUMNS,
                [latent, self.identity, round_],
                self._rows(latent, candidates, None, call_id_of),
                now="created_at",
            )

        self.writer.put_result(write)

    def _store_chosen(self, latent: int, candidates: list[Candidate], chosen: Candidate) -> None:
        """Store every round again with the chosen one marked (rounds not run this time, as after an
        earlier stop, are left out: the key is the latent and its explanation identity)."""

        def write(results, call_id_of):
            for round_ in sorted({c.round for c in candidates}):
                results.replace(
                    "explanation_candidates",
                    ["latent", "config_hash", "round"],
                    CANDIDATE_COLUMNS,
                    [latent, self.identity, round_],
                    self._rows(latent, [c for c in candidates if c.round == round_], chosen, call_id_of),
                    now="created_at",
                )

        self.writer.put_result(write)
