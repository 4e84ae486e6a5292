"""Scoring explanations on the validate split, to choose among candidates (``explain.select``).

Only contexts with ``split = 'validate'`` are read here: the test split stays for ``autointerp score``,
so the reported score of the chosen explanation is never the score it was chosen by (issue 19 item 5).
The validation scorers are the score stage's own: detection (its prompts and sample building, asked of
the explain LLM, calls logged with purpose 'validate') or embedding (no LLM). Either gives per-context
rows with a label and a prediction, from which refinement reads the false positives and negatives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import ExplainConfig, LLMConfig, ScoreConfig, config_hash
from ..errors import AutointerpError
from ..score import classifier
from ..score.base import ScoreContext, ScoreOutcome
from ..score.scorers.classifier import DetectionScorer
from ..score.scorers.embedding import EmbeddingScorer
from ..score.stage import score_options
from ..text import hide_special

#: Headline measure of each validation scorer (its ``ScoreOutcome.score``), as the refine prompt names it.
MEASURE = {"detection": "balanced accuracy", "embedding": "AUROC"}


@dataclass
class Validation:
    """One explanation's validation score: ``score`` (None when nothing could be scored, with
    ``reason``), ``n`` contexts scored, and the contexts it got wrong (their excerpt texts)."""

    score: float | None
    n: int
    reason: str | None
    false_positives: list[str]
    false_negatives: list[str]


def read_validation_sets(cur, latents: list[int], special: frozenset[int] = frozenset()):
    """The validate-split contexts of ``latents`` (hard negatives left out, as every scorer but
    ``detection_hard`` leaves them), as the scorers read test contexts."""
    out: dict[int, list[classifier.TestContext]] = {lat: [] for lat in latents}
    for lat, cid, kind, q, tokens, ids, acts in cur.execute(
        "SELECT latent, context_id, kind, quantile, tokens, token_ids, activations FROM examples "
        "WHERE split = 'validate' AND kind <> 'hard' AND latent IN (SELECT unnest(?)) "
        "ORDER BY latent, kind, quantile, rank",
        [latents],
    ).fetchall():
        shown = hide_special(tokens, ids, special)
        out[lat].append(classifier.TestContext(cid, kind, q, shown, acts, [i in special for i in ids or []]))
    return out


def require_validation_split(con, latents: list[int], minimum: int) -> None:
    """Refuse (AutointerpError) unless every latent of ``latents`` has at least ``minimum`` activating
    and ``minimum`` non-activating validate contexts."""
    negatives = ", ".join(f"'{k}'" for k in classifier.NEGATIVE_KINDS)
    counts = {
        lat: (pos, neg)
        for lat, pos, neg in con.execute(
            f"SELECT latent, count(*) FILTER (WHERE kind NOT IN ({negatives})), "
            f"count(*) FILTER (WHERE kind IN ({negatives})) FROM examples "
            "WHERE split = 'validate' AND kind <> 'hard' AND latent IN (SELECT unnest(?)) GROUP BY latent",
            [latents],
        ).fetchall()
    }
    how = (
        "collect again with validate quotas, e.g. `autointerp collect --overwrite --validate-per-quantile 2 "
        "--random-validate 10`, or lower --min-validation, or explain with --candidates 1 --refine 0."
    )
    if not counts:
        raise AutointerpError(
            "--candidates above 1 and --refine choose explanations on the validate split, but this database "
            "holds no validate contexts for the latents to explain.",
            f"at least {minimum} activating and {minimum} non-activating validate contexts per latent.",
            how,
        )
    short = [lat for lat in latents if min(counts.get(lat, (0, 0))) < minimum]
    if short:
        shown = ", ".join(f"{lat} ({counts.get(lat, (0, 0))[0]}+{counts.get(lat, (0, 0))[1]})" for lat in short[:10])
        raise AutointerpError(
            f"The validate split is too small for {len(short)} latent(s): {shown}"
            + (" ..." if len(short) > 10 else "")
            + " (activating+non-activating validate contexts).",
            f"at least {minimum} activating and {minimum} non-activating validate contexts per latent "
            "(--min-validation).",
            how + " Or leave those latents out with --latents.",
        )


class _ValidateQueue:
    """The run's queue as a validation scorer sees it: its calls are logged with purpose 'validate'
    and items that name the candidate they score."""

    def __init__(self, queue, label: str):
        self.queue, self.label = queue, label
        self.backend, self.stats = queue.backend, queue.stats

    async def run(self, messages, options, item, purpose):
        return await self.queue.run(messages, options, f"{item} {self.label}", "validate")


class Validator:
    """Scores explanations of one run on the validate split with ``config.select_by``."""

    def __init__(self, config: ExplainConfig, con, queue, writer, run_id: str):
        # the explain run's LLM settings (backend, endpoints, throttling), none of its explainer's
        llm = {f.name: getattr(config, f.name) for f in dataclasses.fields(LLMConfig) if f.name != "latents"}
        # temperature 0: the judge's answers, unlike the candidates, should not vary
        self.score_config = ScoreConfig(**{**llm, "scorers": config.select_by, "temperature": 0.0})
        self.name = config.select_by
        self.con, self.queue, self.writer, self.run_id = con, queue, writer, run_id
        self._scorer = self._make(queue)

    def _make(self, queue):
        context = ScoreContext(self.score_config, self.con, queue, score_options(self.score_config), self.writer,
                               self.run_id, {})  # fmt: skip
        return (DetectionScorer if self.name == "detection" else EmbeddingScorer)(context)

    def identity(self) -> str:
        """Hash of what shapes validation scores (the scorer, its settings, prompts and model)."""
        return config_hash({"validate": self._scorer.identity()})

    async def validate(self, latent: int, explanation: str, contexts, label: str) -> Validation:
        """Score ``explanation`` on ``contexts`` (the latent's validate split); ``label`` names the
        candidate in the call log's items."""
        scorer = self._scorer
        if self.name == "detection":  # a scorer per candidate: its calls carry the candidate's label
            scorer = self._make(_ValidateQueue(self.queue, label))
        outcome: ScoreOutcome = await scorer.score(latent, explanation, contexts)
        texts = {c.context_id: classifier.excerpt_text(c.tokens) for c in contexts}
        wrong_positive, wrong_negative = [], []
        for row in outcome.rows:
            if row["prediction"] is None or bool(row["prediction"]) == bool(row["label"]):
                continue
            (wrong_positive if row["prediction"] else wrong_negative).append(texts[row["context_id"]])
        score = outcome.score if outcome.status == "scored" else None
        return Validation(score, outcome.n_examples, outcome.reason, wrong_positive, wrong_negative)
